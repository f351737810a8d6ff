"""Cassandra answers a real keyspace → table → write → read round trip with cassandra-driver."""

import uuid

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.io.asyncioreactor import AsyncioConnection
from cassandra.policies import DCAwareRoundRobinPolicy


def test_keyspace_table_insert_select_and_conditional_insert(
    cassandra_contact: tuple[str, int],
) -> None:
    host, port = cassandra_contact
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(), request_timeout=30)
    cluster = Cluster(
        [host],
        port=port,
        connection_class=AsyncioConnection,  # never the asyncore reactor (gone in Python 3.12)
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    keyspace = f"smoke_{uuid.uuid4().hex}"
    session = cluster.connect()
    try:
        session.execute(
            f"CREATE KEYSPACE {keyspace} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        try:
            session.execute(f"CREATE TABLE {keyspace}.items (id uuid PRIMARY KEY, body text)")
            item_id, body = uuid.uuid4(), f"hello {uuid.uuid4()}"
            insert = session.prepare(f"INSERT INTO {keyspace}.items (id, body) VALUES (?, ?)")
            session.execute(insert, (item_id, body))

            select = session.prepare(f"SELECT id, body FROM {keyspace}.items WHERE id = ?")
            rows = list(session.execute(select, (item_id,)))
            assert [(row.id, row.body) for row in rows] == [(item_id, body)]

            again = session.execute(
                f"INSERT INTO {keyspace}.items (id, body) VALUES (%s, %s) IF NOT EXISTS",
                (item_id, "overwritten"),
            )
            assert again.was_applied is False
            assert session.execute(select, (item_id,)).one().body == body
        finally:
            session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()
