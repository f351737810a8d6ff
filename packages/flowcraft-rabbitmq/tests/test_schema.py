"""SQL building: names, quoting, parameters; and the context-write split."""

import pytest
from flowcraft.core import ports
from flowcraft.rabbitmq import _schema as q
from flowcraft.rabbitmq._store import split_context_writes
from psycopg import sql


def text(statement: sql.Composable) -> str:
    return statement.as_string(None)


def test_default_names_follow_the_original_schema() -> None:
    names = q.TableNames.with_prefix("flowcraft")
    assert (names.contexts, names.statuses) == ("flowcraft_contexts", "flowcraft_statuses")
    assert (names.runs, names.states, names.outbox, names.attempts) == (
        "flowcraft_runs",
        "flowcraft_states",
        "flowcraft_outbox",
        "flowcraft_attempts",
    )


def test_explicit_names_override_the_prefix() -> None:
    names = q.TableNames.with_prefix("ns", contexts="ctx", statuses=None)
    assert (names.contexts, names.statuses) == ("ctx", "ns_statuses")


@pytest.mark.parametrize("bad", ["", "x" * 51, "a\x00b"])
def test_bad_table_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid table name"):
        q.TableNames.with_prefix("ns", runs=bad)


def test_identifiers_are_quoted_so_odd_names_cannot_inject() -> None:
    names = q.TableNames.with_prefix("x", runs='r"; DROP TABLE t; --', statuses='s"; --')
    assert '"r""; DROP TABLE t; --"' in text(q.list_runs_sql(names, status=True, after=False))
    assert '"s""; --"' in text(q.stalled_runs_sql(names))


def test_ddl_is_idempotent_and_creates_the_indexes() -> None:
    statements = [text(s) for s in q.ddl(q.TableNames.with_prefix("fc"))]
    assert all(" IF NOT EXISTS " in s or " IF EXISTS " in s for s in statements)
    joined = "\n".join(statements)
    assert 'DROP INDEX IF EXISTS "fc_runs_status_idx"' in joined  # (status, updated_at) of old
    assert '"fc_runs_status_created_idx" ON "fc_runs" (status, created_at, run_id)' in joined
    assert "ON \"fc_statuses\" ((status_data->>'status'), updated_at)" in joined
    assert '"fc_runs_created_idx" ON "fc_runs" (created_at, run_id)' in joined
    assert "idempotency_key TEXT UNIQUE" in joined
    assert "PRIMARY KEY (run_id, position)" in joined  # the outbox: one row per save
    assert "PRIMARY KEY (run_id, attempt)" in joined


def placeholders(statement: sql.Composable) -> int:
    return text(statement).count("%s")


def test_statements_take_values_only_as_parameters() -> None:
    names = q.TableNames.with_prefix("fc")
    assert placeholders(q.create_run_sql(names)) == 14
    assert placeholders(q.save_state_sql(names)) == 20
    assert placeholders(q.load_state_sql(names)) == 5
    assert placeholders(q.remove_outbox_sql(names)) == 1
    assert placeholders(q.claim_sql(names)) == 4
    assert placeholders(q.extend_sql(names)) == 4
    assert placeholders(q.commit_many_sql(names)) == 1
    assert placeholders(q.find_run_sql(names)) == 3
    assert placeholders(q.stalled_runs_sql(names)) == 3


@pytest.mark.parametrize(
    ("status", "after", "count"),
    [(False, False, 1), (True, False, 2), (False, True, 3), (True, True, 4)],
)
def test_list_runs_sql_variants(status: bool, after: bool, count: int) -> None:
    statement = q.list_runs_sql(q.TableNames.with_prefix("fc"), status=status, after=after)
    rendered = text(statement)
    assert placeholders(statement) == count
    assert rendered.endswith("ORDER BY created_at DESC, run_id DESC LIMIT %s")
    assert ("(created_at, run_id) < (%s, %s)" in rendered) is after


def test_save_state_hangs_every_write_off_the_versioned_update() -> None:
    rendered = text(q.save_state_sql(q.TableNames.with_prefix("fc")))
    assert "WHERE run_id = %s AND version = %s AND (SELECT count(*) FROM a) = %s" in rendered
    assert "ON CONFLICT (run_id, attempt) DO UPDATE SET outcome = EXCLUDED.outcome" in rendered
    assert rendered.count("WHERE run_id IN (SELECT run_id FROM s)") == 1  # the context
    assert "WHERE run.run_id IN (SELECT run_id FROM s)" in rendered
    assert "WHERE stat.run_id IN (SELECT run_id FROM s)" in rendered
    assert "(context_data || %s::jsonb)\n        - ARRAY(SELECT json_array_elements_text(" in (
        rendered
    )
    assert "FROM s, json_array_elements(%s::json) WITH ORDINALITY AS m(v, n)\n    GROUP BY" in (
        rendered
    )


def test_save_removes_sent_messages_as_remove_outbox_does() -> None:
    names = q.TableNames.with_prefix("fc")
    saving, removing = text(q.save_state_sql(names)), text(q.remove_outbox_sql(names))
    assert (
        """d AS (
    SELECT s.run_id, ARRAY(SELECT json_array_elements_text(%s::json)) AS ids FROM s
), gone AS ("""
        in saving
    )
    shared = removing[removing.index("gone AS (") : removing.index("\nSELECT 1")]
    assert 'DELETE FROM "fc_outbox" o USING d' in shared
    assert 'UPDATE "fc_outbox" o' in shared
    assert shared in saving


def test_save_writes_run_and_status_rows_only_when_they_change() -> None:
    rendered = text(q.save_state_sql(q.TableNames.with_prefix("fc")))
    stale = f"updated_at < now() - make_interval(secs => {q.UPDATED_AT_GRANULARITY})"
    assert rendered.count(stale) == 2
    assert "run.status IS DISTINCT FROM x.status OR run.output IS DISTINCT FROM x.output" in (
        rendered
    )
    assert "stat.status_data IS DISTINCT FROM x.status_data" in rendered


def test_outbox_migration_moves_the_old_table_aside_and_copies_it_in_order() -> None:
    check, before, after = q.outbox_migration(q.TableNames.with_prefix("fc"))
    assert "column_name = 'message_id'" in text(check)
    assert [text(s) for s in before] == [
        'ALTER TABLE "fc_outbox" RENAME TO "fc_outbox_v1"',
        'ALTER INDEX IF EXISTS "fc_outbox_pkey" RENAME TO "fc_outbox_v1_pkey"',
    ]
    copy, drop = (text(s) for s in after)
    assert "array_agg(message_id ORDER BY position), array_agg(body ORDER BY position)" in copy
    assert drop == 'DROP TABLE "fc_outbox_v1"'


def test_queries_are_rendered_once_from_the_same_builders() -> None:
    names = q.TableNames.with_prefix("fc")
    queries = q.Queries.render(names)
    assert queries.save_state == q.save_state_sql(names).as_bytes(None)
    assert queries.claim == q.claim_sql(names).as_bytes(None)
    assert b'"fc_outbox"' in queries.remove_outbox


def test_context_writes_split_into_sets_and_deletes() -> None:
    sets, deletes = split_context_writes({"a": 1, "b": ports.DELETE, "c": None})
    assert sets == {"a": 1, "c": None}
    assert deletes == ["b"]


def test_readme_shows_the_ddl_that_ensure_schema_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    statements = q.ddl(q.TableNames.with_prefix("flowcraft"))
    ddl = ";\n\n".join(text(statement) for statement in statements) + ";"
    assert f"```sql\n{ddl}\n```" in readme
