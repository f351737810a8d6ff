"""The PostgreSQL schema of the run store and the SQL that reads and writes it (pure).

Nothing here performs I/O: these functions build ``psycopg.sql.Composed`` statements from a
``TableNames`` (every identifier goes through ``sql.Identifier``; every value is a ``%s``
parameter). ``_store.py`` executes them.

Tables (default names with ``table_prefix="flowcraft"``)::

    flowcraft_contexts  (run_id text PK, context_data jsonb)        the original adapter's table
    flowcraft_statuses  (run_id text PK, status_data jsonb,         the original adapter's table;
                         updated_at timestamptz)                     status_data = {"status": ...}
    flowcraft_runs      run records: status, blueprint id/version/digest, input, output, errors,
                        parent, idempotency_key UNIQUE (NULLs allowed), created_at, updated_at
    flowcraft_states    (run_id PK, version int, document jsonb)    the run header, CAS'd
    flowcraft_records   (run_id, key, version int, value jsonb)     PK (run_id, key): the run's
                                                                     records, each with the
                                                                     version that wrote it
    flowcraft_outbox    (run_id, position, message_ids text[],      PK (run_id, position): one
                         bodies bytea[])                             row per save, not per message
    flowcraft_attempts  (run_id, attempt, owner, lease_until,       PK (run_id, attempt)
                         outcome bytea NULL)

Indexes: records (run_id, version) for loading what changed since a version; statuses
((status_data->>'status'), updated_at) for ``stalled_runs`` (and the original reconciler
query); runs (created_at, run_id) and runs (status, created_at, run_id) for
``list_runs``. No index of the run table covers ``updated_at``: every save sets it, and an
indexed column that changes turns the update of the run row into a non-HOT one (a new entry
in every index of the table per save). ``ensure_schema`` drops ``{runs}_status_idx``
(status, updated_at) of earlier versions for that reason.

A save writes the run and status rows only when something there changes: the status, output
or errors, or an ``updated_at`` older than ``UPDATED_AT_GRANULARITY`` seconds (so
``updated_at`` trails the last save by at most that: stalled-run detection is that much
coarser, and a step of a busy run writes two rows fewer).

The outbox keeps one row per save holding all of that save's messages (inserting eight rows
for a fan-out of eight cost about as much as the rest of the save). An outbox of the earlier
one-row-per-message shape is converted by ``ensure_schema`` (``outbox_migration``).

A run's state is its header (``states.document``, rewritten by each save) and its records
(``records``: a save upserts those its decision changed, in the same statement). States of
earlier builds kept the whole engine document in ``states.document``; ``ensure_schema``
converts them (``legacy_states_sql``, then the core's ``ports.records_from_document``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from psycopg import sql

__all__ = [
    "RUN_COLUMNS",
    "TERMINAL_STATUSES",
    "UPDATED_AT_GRANULARITY",
    "Queries",
    "TableNames",
    "active_statuses",
    "attempts_sql",
    "claim_many_sql",
    "claim_sql",
    "commit_many_sql",
    "create_run_sql",
    "create_started_run_sql",
    "ddl",
    "extend_sql",
    "find_run_sql",
    "legacy_states_sql",
    "list_runs_sql",
    "load_state_sql",
    "outbox_migration",
    "read_result_sql",
    "remove_outbox_sql",
    "save_state_sql",
    "stalled_runs_sql",
]

TERMINAL_STATUSES = ("completed", "failed", "cancelled")
#: Seconds a save may leave the run's and status's ``updated_at`` as it is.
UPDATED_AT_GRANULARITY = 1.0
_ACTIVE_STATUSES = ["pending", "running", "awaiting"]

#: Columns of a run record as selected, in ``RunRecord`` order plus the raw created_at.
RUN_COLUMNS = sql.SQL(
    "run_id, blueprint_id, blueprint_version, blueprint_digest, status, input, output, errors, "
    "parent, idempotency_key, extract(epoch FROM created_at)::float8, "
    "extract(epoch FROM updated_at)::float8, created_at"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TableNames:
    """The seven table names of one store (unquoted; quoted by ``sql.Identifier`` when used)."""

    contexts: str
    statuses: str
    runs: str
    states: str
    outbox: str
    attempts: str
    records: str

    @classmethod
    def with_prefix(cls, prefix: str, **overrides: str | None) -> TableNames:
        """``{prefix}_contexts`` etc., with any name given in ``overrides`` taking precedence."""
        names = {f.name: _pick(overrides.get(f.name), f"{prefix}_{f.name}") for f in fields(cls)}
        for name in names.values():
            _check_name(name)
        return cls(**names)

    def ident(self, table: str) -> sql.Identifier:
        """The quoted identifier of one table, by field name (``"runs"``)."""
        return sql.Identifier(getattr(self, table))

    def index(self, table: str, suffix: str) -> sql.Identifier:
        """The identifier of an index on ``table`` (``{table}_{suffix}``)."""
        return sql.Identifier(f"{getattr(self, table)}_{suffix}")


def _pick(given: str | None, default: str) -> str:
    return default if given is None else given


def _check_name(name: str) -> None:
    if not name or len(name) > 50 or "\x00" in name:
        raise ValueError(f"invalid table name {name!r}: 1 to 50 characters, no NUL")


_DDL = (
    """CREATE TABLE IF NOT EXISTS {contexts} (
    run_id TEXT PRIMARY KEY,
    context_data JSONB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {statuses} (
    run_id TEXT PRIMARY KEY,
    status_data JSONB NOT NULL,
    updated_at TIMESTAMPTZ DEFAULT NOW()
)""",
    """CREATE INDEX IF NOT EXISTS {statuses_status_idx}
    ON {statuses} ((status_data->>'status'), updated_at)""",
    """CREATE TABLE IF NOT EXISTS {runs} (
    run_id TEXT PRIMARY KEY,
    blueprint_id TEXT NOT NULL,
    blueprint_version TEXT NOT NULL,
    blueprint_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    input JSONB,
    output JSONB,
    errors JSONB NOT NULL DEFAULT '[]',
    parent JSONB,
    idempotency_key TEXT UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)""",
    "DROP INDEX IF EXISTS {runs_status_idx}",
    "CREATE INDEX IF NOT EXISTS {runs_status_created_idx} ON {runs} (status, created_at, run_id)",
    "CREATE INDEX IF NOT EXISTS {runs_created_idx} ON {runs} (created_at, run_id)",
    """CREATE TABLE IF NOT EXISTS {states} (
    run_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    document JSONB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {outbox} (
    run_id TEXT NOT NULL,
    position BIGINT GENERATED ALWAYS AS IDENTITY,
    message_ids TEXT[] NOT NULL,
    bodies BYTEA[] NOT NULL,
    PRIMARY KEY (run_id, position)
)""",
    """CREATE TABLE IF NOT EXISTS {attempts} (
    run_id TEXT NOT NULL,
    attempt TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    outcome BYTEA,
    PRIMARY KEY (run_id, attempt)
)""",
    """CREATE TABLE IF NOT EXISTS {records} (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value JSONB NOT NULL,
    PRIMARY KEY (run_id, key)
)""",
    "CREATE INDEX IF NOT EXISTS {records_version_idx} ON {records} (run_id, version)",
)


def _names(t: TableNames) -> dict[str, sql.Identifier]:
    names = {f.name: t.ident(f.name) for f in fields(t)}
    names["statuses_status_idx"] = t.index("statuses", "status_idx")
    names["runs_status_idx"] = t.index("runs", "status_idx")  # dropped: see the docstring
    names["runs_status_created_idx"] = t.index("runs", "status_created_idx")
    names["runs_created_idx"] = t.index("runs", "created_idx")
    names["records_version_idx"] = t.index("records", "version_idx")
    names["outbox_v1"] = t.index("outbox", "v1")
    names["outbox_pkey"] = t.index("outbox", "pkey")
    names["outbox_v1_pkey"] = t.index("outbox", "v1_pkey")
    return names


def ddl(t: TableNames) -> list[sql.Composed]:
    """Every ``CREATE ... IF NOT EXISTS`` statement, in order (idempotent)."""
    names = _names(t)
    return [sql.SQL(text).format(**names) for text in _DDL]


def outbox_migration(t: TableNames) -> tuple[sql.SQL, list[sql.Composed], list[sql.Composed]]:
    """Converting an outbox of the one-row-per-message shape (earlier builds) to one row per save.

    Returns the check (params: the outbox table's name; a row when the old shape is there),
    the statements to run before ``ddl`` (move the old table aside) and after it (copy its
    messages, one row per run in their order, and drop it). Run in one transaction.
    """
    names = _names(t)
    check = sql.SQL(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s AND column_name = 'message_id'"
    )
    before = [
        sql.SQL(text).format(**names)
        for text in (
            "ALTER TABLE {outbox} RENAME TO {outbox_v1}",
            "ALTER INDEX IF EXISTS {outbox_pkey} RENAME TO {outbox_v1_pkey}",
        )
    ]
    after = [
        sql.SQL(text).format(**names)
        for text in (
            """INSERT INTO {outbox} (run_id, message_ids, bodies)
SELECT run_id, array_agg(message_id ORDER BY position), array_agg(body ORDER BY position)
FROM {outbox_v1} GROUP BY run_id""",
            "DROP TABLE {outbox_v1}",
        )
    ]
    return check, before, after


def legacy_states_sql(t: TableNames) -> tuple[sql.Composed, sql.Composed]:
    """Finding states of earlier builds (a whole engine document) and storing one converted.

    The first selects ``run_id, version, document`` of every such state (for update); the
    second (params: header, run_id, records as jsonb) stores the header and the records.
    """
    names = _names(t)
    find = sql.SQL(
        "SELECT run_id, version, document FROM {states} WHERE document ? 'nodes' FOR UPDATE"
    ).format(**names)
    store = sql.SQL(
        """WITH s AS (
    UPDATE {states} SET document = %s WHERE run_id = %s RETURNING run_id, version
)
INSERT INTO {records} (run_id, key, version, value)
SELECT s.run_id, x.key, s.version, x.value FROM s, jsonb_each(%s::jsonb) AS x(key, value)
ON CONFLICT (run_id, key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value"""
    ).format(**names)
    return find, store


def _insert_run(t: TableNames) -> sql.Composed:
    """The run row's insert that the create statements hang every other write off.

    11 params (the record's); returns the row, or none when the id or idempotency key exists.
    """
    return sql.SQL(
        """INSERT INTO {runs} (run_id, blueprint_id, blueprint_version, blueprint_digest, status,
                        input, output, errors, parent, idempotency_key, created_at, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
            COALESCE(to_timestamp(%s), now()), now())
    ON CONFLICT DO NOTHING
    RETURNING *"""
    ).format(runs=t.ident("runs"))


def create_run_sql(t: TableNames) -> sql.Composed:
    """Insert the run and its state, records, context and status rows, unless it exists.

    Params: run_id, blueprint_id, blueprint_version, blueprint_digest, status, input, output,
    errors, parent, idempotency_key, created_at (epoch or NULL), header, records (jsonb),
    status_data.
    Returns the new record's columns, or no row when nothing was written.
    """
    return sql.SQL(
        """WITH r AS (
    {insert_run}
), s AS (
    INSERT INTO {states} (run_id, version, document) SELECT run_id, 1, %s FROM r
), k AS (
    INSERT INTO {records} (run_id, key, version, value)
    SELECT r.run_id, x.key, 1, x.value FROM r, jsonb_each(%s::jsonb) AS x(key, value)
), c AS (
    INSERT INTO {contexts} (run_id, context_data) SELECT run_id, '{{}}'::jsonb FROM r
    ON CONFLICT (run_id) DO UPDATE SET context_data = '{{}}'::jsonb
), st AS (
    INSERT INTO {statuses} (run_id, status_data, updated_at) SELECT run_id, %s, now() FROM r
    ON CONFLICT (run_id) DO UPDATE SET status_data = EXCLUDED.status_data, updated_at = now()
)
SELECT {columns} FROM r"""
    ).format(**_names(t), columns=RUN_COLUMNS, insert_run=_insert_run(t))


def create_started_run_sql(t: TableNames) -> sql.Composed:
    """``create_run_sql`` and the first decision's save in one statement (version 2).

    Params: the 11 record params of ``create_run_sql`` (its status is the started one),
    header, records (jsonb, each written as version 2), context (jsonb), outbox (JSON
    ``[[id, base64 body], ...]``), status_data, notify channel, notify payload, whether to
    notify (terminal).
    Every write hangs off the run row's insert: when the id or idempotency key exists, it
    inserts nothing and nothing else is written. Returns the new record's columns, or no row.
    """
    return sql.SQL(
        """WITH r AS (
    {insert_run}
), s AS (
    INSERT INTO {states} (run_id, version, document) SELECT run_id, 2, %s FROM r
), k AS (
    INSERT INTO {records} (run_id, key, version, value)
    SELECT r.run_id, x.key, 2, x.value FROM r, jsonb_each(%s::jsonb) AS x(key, value)
), c AS (
    INSERT INTO {contexts} (run_id, context_data) SELECT run_id, %s::jsonb FROM r
    ON CONFLICT (run_id) DO UPDATE SET context_data = EXCLUDED.context_data
), o AS (
    INSERT INTO {outbox} (run_id, message_ids, bodies)
    SELECT r.run_id, array_agg(m.v->>0 ORDER BY m.n),
        array_agg(decode(m.v->>1, 'base64') ORDER BY m.n)
    FROM r, json_array_elements(%s::json) WITH ORDINALITY AS m(v, n)
    GROUP BY r.run_id
), st AS (
    INSERT INTO {statuses} (run_id, status_data, updated_at) SELECT run_id, %s, now() FROM r
    ON CONFLICT (run_id) DO UPDATE SET status_data = EXCLUDED.status_data, updated_at = now()
), n AS (
    SELECT pg_notify(%s, %s) FROM r WHERE %s
)
SELECT {columns}, (SELECT count(*) FROM n) FROM r"""
    ).format(**_names(t), columns=RUN_COLUMNS, insert_run=_insert_run(t))


def read_result_sql(t: TableNames) -> sql.Composed:
    """Version, header, context and the named records of one run (one snapshot).

    Params: keys (text[]), run_id. The records come as one JSON object. No row: no such run.
    """
    return sql.SQL(
        """SELECT s.version, s.document, COALESCE(c.context_data, '{{}}'::jsonb),
    (SELECT COALESCE(json_object_agg(k.key, k.value), '{{}}'::json) FROM {records} k
     WHERE k.run_id = s.run_id AND k.key = ANY(%s::text[]))
FROM {states} s LEFT JOIN {contexts} c ON c.run_id = s.run_id
WHERE s.run_id = %s"""
    ).format(**_names(t))


def find_run_sql(t: TableNames) -> sql.Composed:
    """The record whose id is the first param, else whose idempotency key is the second."""
    return sql.SQL(
        "SELECT {columns} FROM {runs} WHERE run_id = %s OR idempotency_key = %s "
        "ORDER BY run_id = %s DESC LIMIT 1"
    ).format(columns=RUN_COLUMNS, runs=t.ident("runs"))


def load_state_sql(t: TableNames) -> sql.Composed:
    """Version, header, context, outbox, records and the run's record, in one snapshot.

    Params: whether to read the outbox (twice), since (-1: every record), keys (text[]: records
    wanted whatever their version), run_id. The outbox comes as ids and bodies in order (an id
    saved twice comes twice: the caller keeps the first); the records as one JSON object; the
    record as the ``RUN_COLUMNS``. Records newer than ``since`` are found through (run_id,
    version).
    """
    return sql.SQL(
        """SELECT s.version, s.document, COALESCE(c.context_data, '{{}}'::jsonb),
    ARRAY(SELECT m.id FROM {outbox} o, unnest(o.message_ids) WITH ORDINALITY AS m(id, n)
          WHERE o.run_id = s.run_id AND %s ORDER BY o.position, m.n),
    ARRAY(SELECT m.body FROM {outbox} o, unnest(o.bodies) WITH ORDINALITY AS m(body, n)
          WHERE o.run_id = s.run_id AND %s ORDER BY o.position, m.n),
    (SELECT COALESCE(json_object_agg(k.key, k.value), '{{}}'::json) FROM (
        SELECT key, value FROM {records} WHERE run_id = s.run_id AND version > %s
        UNION SELECT key, value FROM {records} WHERE run_id = s.run_id AND key = ANY(%s::text[])
    ) AS k),
    r.run_id, r.blueprint_id, r.blueprint_version, r.blueprint_digest, r.status, r.input,
    r.output, r.errors, r.parent, r.idempotency_key, extract(epoch FROM r.created_at)::float8,
    extract(epoch FROM r.updated_at)::float8, r.created_at
FROM {states} s JOIN {runs} r ON r.run_id = s.run_id
    LEFT JOIN {contexts} c ON c.run_id = s.run_id
WHERE s.run_id = %s"""
    ).format(**_names(t))


def save_state_sql(t: TableNames) -> sql.Composed:
    """The whole compare-and-set of ``save_state`` as one statement (atomic, one round trip).

    First the carried attempt outcomes are committed (first writer wins, like ``commit_many_sql``);
    every other write hangs off the versioned UPDATE of the state row, which also requires
    that each of those outcomes was written by this statement: when the version moved on (or
    an outcome was there before), that UPDATE matches nothing and so does everything else.
    The run's state row is locked first (``lk``), before the attempt rows of the outcomes
    and the claims: two saves of one run then queue on that row instead of each holding an
    attempt row the other needs (an outcome's row before the state row in one, a claim's
    after it in the other: a lock-order cycle, ``40P01``).
    Params: run_id, outcomes (JSON ``[[attempt, base64 outcome], ...]``), header, run_id,
    expected_version, number of outcomes, records (jsonb: key -> value), context sets (jsonb),
    context deletes (JSON list of keys), whether there are context writes (the context row is
    left alone otherwise: no new row version per save), outbox (JSON ``[[id, base64 body],
    ...]``), claims (JSON ``[[attempt, owner, lease seconds], ...]``), sent (JSON ``[message id,
    ...]``), status, output, errors, status_data, notify channel, notify payload, whether to
    notify (terminal).
    Lists travel as one JSON text each: psycopg adapts arrays in Python, element by element,
    which showed up in profiles; JSON is encoded in C on both sides. The outbox becomes one
    row (none without messages); the ``sent`` messages leave the outbox as with
    ``remove_outbox``; the run and status rows are written only when they change (or their
    ``updated_at`` is older than ``UPDATED_AT_GRANULARITY``).
    Returns the count of updated state rows (0 or 1).
    """
    return sql.SQL(
        """WITH lk AS (
    SELECT run_id FROM {states} WHERE run_id = %s FOR NO KEY UPDATE
), a AS (
    INSERT INTO {attempts} AS a (run_id, attempt, owner, lease_until, outcome)
    SELECT lk.run_id, x.v->>0, '', clock_timestamp(), decode(x.v->>1, 'base64')
    FROM lk, json_array_elements(%s::json) AS x(v)
    ON CONFLICT (run_id, attempt) DO UPDATE SET outcome = EXCLUDED.outcome
        WHERE a.outcome IS NULL
    RETURNING 1
), s AS (
    UPDATE {states} SET version = version + 1, document = %s
    WHERE run_id = %s AND version = %s AND (SELECT count(*) FROM a) = %s
    RETURNING run_id, version
), k AS (
    INSERT INTO {records} (run_id, key, version, value)
    SELECT s.run_id, x.key, s.version, x.value FROM s, jsonb_each(%s::jsonb) AS x(key, value)
    ON CONFLICT (run_id, key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value
), c AS (
    UPDATE {contexts}
    SET context_data = (context_data || %s::jsonb)
        - ARRAY(SELECT json_array_elements_text(%s::json))
    WHERE run_id IN (SELECT run_id FROM s) AND %s
), o AS (
    INSERT INTO {outbox} (run_id, message_ids, bodies)
    SELECT s.run_id, array_agg(m.v->>0 ORDER BY m.n),
        array_agg(decode(m.v->>1, 'base64') ORDER BY m.n)
    FROM s, json_array_elements(%s::json) WITH ORDINALITY AS m(v, n)
    GROUP BY s.run_id
), cl AS (
    INSERT INTO {attempts} (run_id, attempt, owner, lease_until)
    SELECT s.run_id, x.v->>0, x.v->>1,
        clock_timestamp() + make_interval(secs => (x.v->>2)::float8)
    FROM s, json_array_elements(%s::json) AS x(v)
    ON CONFLICT (run_id, attempt) DO NOTHING
), d AS (
    SELECT s.run_id, ARRAY(SELECT json_array_elements_text(%s::json)) AS ids FROM s
), {remove}, r AS (
    UPDATE {runs} AS run SET status = x.status, output = x.output, errors = x.errors,
        updated_at = now()
    FROM (SELECT %s::text AS status, %s::jsonb AS output, %s::jsonb AS errors) AS x
    WHERE run.run_id IN (SELECT run_id FROM s)
        AND (run.status IS DISTINCT FROM x.status OR run.output IS DISTINCT FROM x.output
             OR run.errors IS DISTINCT FROM x.errors OR run.updated_at < now() - {granularity})
), st AS (
    UPDATE {statuses} AS stat SET status_data = x.status_data, updated_at = now()
    FROM (SELECT %s::jsonb AS status_data) AS x
    WHERE stat.run_id IN (SELECT run_id FROM s)
        AND (stat.status_data IS DISTINCT FROM x.status_data
             OR stat.updated_at IS NULL OR stat.updated_at < now() - {granularity})
), n AS (
    SELECT pg_notify(%s, %s) FROM s WHERE %s
)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM n)"""
    ).format(**_names(t), granularity=_granularity(), remove=_remove_from_outbox(t))


def _granularity() -> sql.Composed:
    return sql.SQL("make_interval(secs => {})").format(sql.Literal(UPDATED_AT_GRANULARITY))


def remove_outbox_sql(t: TableNames) -> sql.Composed:
    """Remove messages from the outboxes of many runs. Params: JSON ``{run_id: [id, ...]}``."""
    return sql.SQL(
        """WITH d AS (
    SELECT d.key AS run_id, ARRAY(SELECT json_array_elements_text(d.value)) AS ids
    FROM json_each(%s::json) AS d
), {remove}
SELECT 1"""
    ).format(remove=_remove_from_outbox(t))


def _remove_from_outbox(t: TableNames) -> sql.Composed:
    """CTEs dropping the ids of ``d (run_id, ids)`` from the outbox rows of those runs.

    A row all of whose messages go is deleted; a row that keeps some (its save's messages were
    not all sent, or not all sent yet) is rewritten without the others. The two touch
    different rows, so one statement does both.
    """
    return sql.SQL(
        """gone AS (
    DELETE FROM {outbox} o USING d
    WHERE o.run_id = d.run_id AND o.message_ids <@ d.ids
), kept AS (
    UPDATE {outbox} o
    SET message_ids = ARRAY(SELECT m.id FROM unnest(o.message_ids) WITH ORDINALITY AS m(id, n)
                            WHERE m.id <> ALL(d.ids) ORDER BY m.n),
        bodies = ARRAY(SELECT m.body FROM unnest(o.message_ids, o.bodies) WITH ORDINALITY
                           AS m(id, body, n) WHERE m.id <> ALL(d.ids) ORDER BY m.n)
    FROM d
    WHERE o.run_id = d.run_id AND o.message_ids && d.ids AND NOT o.message_ids <@ d.ids
)"""
    ).format(outbox=t.ident("outbox"))


def claim_sql(t: TableNames) -> sql.Composed:
    """Take the lease if free, expired or already ours, and no outcome is committed.

    Params: run_id, attempt, owner, lease seconds. Returns the new lease expiry (epoch) or no
    row. Leases are measured on the database clock (``clock_timestamp()``).
    """
    return sql.SQL(
        """INSERT INTO {attempts} AS a (run_id, attempt, owner, lease_until)
VALUES (%s, %s, %s, clock_timestamp() + make_interval(secs => %s))
ON CONFLICT (run_id, attempt) DO UPDATE
    SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
    WHERE a.outcome IS NULL AND (a.owner = EXCLUDED.owner OR a.lease_until <= clock_timestamp())
RETURNING extract(epoch FROM lease_until)::float8"""
    ).format(attempts=t.ident("attempts"))


def claim_many_sql(t: TableNames) -> sql.Composed:
    """``claim_sql`` for many attempts of one owner at once (distinct ``(run_id, attempt)``).

    Params: owner, lease seconds, JSON ``[[run_id, attempt], ...]``. Returns
    ``(run_id, attempt, lease expiry)`` of each attempt claimed; the others are busy or done.
    """
    return sql.SQL(
        """INSERT INTO {attempts} AS a (run_id, attempt, owner, lease_until)
SELECT x.v->>0, x.v->>1, %s, clock_timestamp() + make_interval(secs => %s)
FROM json_array_elements(%s::json) AS x(v)
ON CONFLICT (run_id, attempt) DO UPDATE
    SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
    WHERE a.outcome IS NULL AND (a.owner = EXCLUDED.owner OR a.lease_until <= clock_timestamp())
RETURNING run_id, attempt, extract(epoch FROM lease_until)::float8"""
    ).format(attempts=t.ident("attempts"))


def attempts_sql(t: TableNames) -> sql.Composed:
    """Run id, attempt, lease expiry (epoch) and outcome of each of many attempts.

    Params: JSON ``[[run_id, attempt], ...]``.
    """
    return sql.SQL(
        """SELECT a.run_id, a.attempt, extract(epoch FROM a.lease_until)::float8, a.outcome
FROM {attempts} a JOIN json_array_elements(%s::json) AS x(v)
    ON a.run_id = x.v->>0 AND a.attempt = x.v->>1"""
    ).format(attempts=t.ident("attempts"))


def extend_sql(t: TableNames) -> sql.Composed:
    """Move the owner's lease to now + seconds. Params: lease seconds, run_id, attempt, owner."""
    return sql.SQL(
        """UPDATE {attempts} SET lease_until = clock_timestamp() + make_interval(secs => %s)
WHERE run_id = %s AND attempt = %s AND owner = %s AND outcome IS NULL"""
    ).format(attempts=t.ident("attempts"))


def commit_many_sql(t: TableNames) -> sql.Composed:
    """Record each outcome if none is: first writer wins (distinct ``(run_id, attempt)``).

    Params: JSON ``[[run_id, attempt, base64 outcome], ...]``. Returns ``(run_id, attempt)``
    of each outcome this statement wrote; the others had one already (read them with
    ``attempts_sql``).
    """
    return sql.SQL(
        """INSERT INTO {attempts} AS a (run_id, attempt, owner, lease_until, outcome)
SELECT x.v->>0, x.v->>1, '', clock_timestamp(), decode(x.v->>2, 'base64')
FROM json_array_elements(%s::json) AS x(v)
ON CONFLICT (run_id, attempt) DO UPDATE SET outcome = EXCLUDED.outcome
    WHERE a.outcome IS NULL
RETURNING run_id, attempt"""
    ).format(attempts=t.ident("attempts"))


def list_runs_sql(t: TableNames, *, status: bool, after: bool) -> sql.Composed:
    """Newest first, keyset-paginated on (created_at, run_id).

    Params, in order: status (if ``status``), created_at and run_id of the last row seen (if
    ``after``), limit.
    """
    where: list[sql.Composable] = []
    if status:
        where.append(sql.SQL("status = %s"))
    if after:
        where.append(sql.SQL("(created_at, run_id) < (%s, %s)"))
    clause = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
    return sql.SQL(
        "SELECT {columns} FROM {runs}{where} ORDER BY created_at DESC, run_id DESC LIMIT %s"
    ).format(columns=RUN_COLUMNS, runs=t.ident("runs"), where=clause)


def stalled_runs_sql(t: TableNames) -> sql.Composed:
    """Ids of active runs not saved since a time. Params: active statuses, epoch, limit.

    Reads the status table (its ``updated_at`` is set by every save, like the run table's)
    through its ((status_data->>'status'), updated_at) index.
    """
    return sql.SQL(
        "SELECT run_id FROM {statuses} WHERE status_data->>'status' = ANY(%s::text[]) "
        "AND updated_at < to_timestamp(%s) ORDER BY updated_at LIMIT %s"
    ).format(statuses=t.ident("statuses"))


def active_statuses() -> list[str]:
    """The statuses ``stalled_runs`` looks at (every non-terminal one)."""
    return list(_ACTIVE_STATUSES)


@dataclass(frozen=True, slots=True)
class Queries:
    """The fixed statements of one store, rendered once.

    A store runs them thousands of times a second; composing and quoting them per call
    showed up in profiles.
    """

    create_run: bytes
    create_started_run: bytes
    read_result: bytes
    find_run: bytes
    load_state: bytes
    save_state: bytes
    remove_outbox: bytes
    claim: bytes
    claim_many: bytes
    attempts: bytes
    extend: bytes
    commit_many: bytes
    stalled_runs: bytes

    @classmethod
    def render(cls, t: TableNames) -> Queries:
        """Every fixed statement of ``t``, as bytes."""
        return cls(
            create_run=create_run_sql(t).as_bytes(None),
            create_started_run=create_started_run_sql(t).as_bytes(None),
            read_result=read_result_sql(t).as_bytes(None),
            find_run=find_run_sql(t).as_bytes(None),
            load_state=load_state_sql(t).as_bytes(None),
            save_state=save_state_sql(t).as_bytes(None),
            remove_outbox=remove_outbox_sql(t).as_bytes(None),
            claim=claim_sql(t).as_bytes(None),
            claim_many=claim_many_sql(t).as_bytes(None),
            attempts=attempts_sql(t).as_bytes(None),
            extend=extend_sql(t).as_bytes(None),
            commit_many=commit_many_sql(t).as_bytes(None),
            stalled_runs=stalled_runs_sql(t).as_bytes(None),
        )
