"""The Cassandra tables of the run store, created idempotently (``ensure_schema``).

Every table carries the namespace in its partition key, so namespaces share tables (creating
tables is a slow schema change in Cassandra; a namespace costs none). With the defaults
(``context_table_name="flowcraft_contexts"``, ``status_table_name="flowcraft_statuses"``):

* ``flowcraft_contexts`` — **one partition per run** (``(namespace, run_id)``). Static columns
  hold the run's header, version, record fields and a pending journal pointer; rows, by
  ``kind`` and ``key``: ``r`` records, ``c`` context keys, ``o`` outbox messages, ``d``
  committed outcomes, ``j`` journal chunks of a large save, ``h`` the run's anchor (one row,
  key ``''``, written with the run: a read of some rows that names it always gets the statics).
  It replaces the original adapter's context table (one JSON blob per run).
* ``flowcraft_contexts_attempts`` — **one partition per attempt** (``(namespace, run_id,
  attempt)``): its lease (owner, expiry), written with a TTL of the lease plus a day. Kept out
  of the run's partition so that the claims of a fan-out's nodes (lightweight transactions, all
  at once) do not queue behind each other and the run's saves on one partition's Paxos state.
* ``flowcraft_statuses`` — runs by creation day (``(namespace, day)``, newest first): what
  ``list_runs`` pages through. It replaces the original status table (statuses live with the
  run, so a save is one partition).
* ``flowcraft_statuses_days`` — the days that have runs, per namespace, newest first.
* ``flowcraft_statuses_active`` — unfinished runs, in 16 shards per namespace: what
  ``stalled_runs`` reads (a run leaves it when a save makes it terminal).
* ``flowcraft_contexts_keys`` — idempotency key -> run id (``INSERT ... IF NOT EXISTS``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACTIVE_SHARDS", "Tables"]

#: Shards of the active-runs table per namespace.
ACTIVE_SHARDS = 16


@dataclass(frozen=True, slots=True)
class Tables:
    """Fully qualified table names of one store."""

    keyspace: str
    context_table_name: str = "flowcraft_contexts"
    status_table_name: str = "flowcraft_statuses"

    def __post_init__(self) -> None:
        for name in (self.keyspace, self.context_table_name, self.status_table_name):
            if not name.replace("_", "").isalnum() or not name[0].isalpha() or len(name) > 40:
                raise ValueError(
                    f"CassandraContext: {name!r} is not a valid keyspace or table name "
                    "(letters, digits and _, starting with a letter, at most 40 characters)"
                )

    @property
    def runs(self) -> str:
        """The run partitions."""
        return f"{self.keyspace}.{self.context_table_name}"

    @property
    def keys(self) -> str:
        """Idempotency keys."""
        return f"{self.keyspace}.{self.context_table_name}_keys"

    @property
    def attempts(self) -> str:
        """Attempt leases, one partition each."""
        return f"{self.keyspace}.{self.context_table_name}_attempts"

    @property
    def listing(self) -> str:
        """Runs by creation day."""
        return f"{self.keyspace}.{self.status_table_name}"

    @property
    def days(self) -> str:
        """Days with runs."""
        return f"{self.keyspace}.{self.status_table_name}_days"

    @property
    def active(self) -> str:
        """Unfinished runs."""
        return f"{self.keyspace}.{self.status_table_name}_active"

    def keyspace_ddl(self, replication: str) -> str:
        """CREATE KEYSPACE (``replication``: the CQL map, e.g. SimpleStrategy with RF 1)."""
        return f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = {replication}"

    def ddl(self) -> list[str]:
        """Every CREATE TABLE, in order."""
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.runs} (
  namespace text, run_id text, kind text, key text,
  version bigint static, header text static, journal text static, record text static,
  status text static, output text static, errors text static, updated_at double static,
  value text, body blob, orders set<bigint>, written bigint, outcome blob,
  PRIMARY KEY ((namespace, run_id), kind, key))""",
            f"""CREATE TABLE IF NOT EXISTS {self.attempts} (
  namespace text, run_id text, attempt text, owner text, lease_until double,
  PRIMARY KEY ((namespace, run_id, attempt)))""",
            f"""CREATE TABLE IF NOT EXISTS {self.keys} (
  namespace text, idempotency_key text, run_id text,
  PRIMARY KEY ((namespace, idempotency_key)))""",
            f"""CREATE TABLE IF NOT EXISTS {self.listing} (
  namespace text, day bigint, created_at double, run_id text,
  PRIMARY KEY ((namespace, day), created_at, run_id))
  WITH CLUSTERING ORDER BY (created_at DESC, run_id DESC)""",
            f"""CREATE TABLE IF NOT EXISTS {self.days} (
  namespace text, day bigint, PRIMARY KEY ((namespace), day))
  WITH CLUSTERING ORDER BY (day DESC)""",
            f"""CREATE TABLE IF NOT EXISTS {self.active} (
  namespace text, shard int, run_id text, PRIMARY KEY ((namespace, shard), run_id))""",
        ]
