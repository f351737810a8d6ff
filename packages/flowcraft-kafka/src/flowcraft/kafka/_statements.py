"""Every CQL statement of the Cassandra run store, as text (prepared on first use).

Statements take every value through a bind marker (``?``); only the keyspace and table names
are substituted into the text, and :class:`flowcraft.kafka._tables.Tables` has validated those
(letters, digits and underscores).
"""

from __future__ import annotations

from string import Template

from flowcraft.kafka._tables import Tables

__all__ = ["Queries"]

_USING = ("", " USING TIMESTAMP ?")  # a statement's text without, then with, a timestamp


class _Template:
    """Substitutes the validated table names (``$runs``, ``$keys``, ...) into a statement."""

    def __init__(self, t: Tables) -> None:
        self._names = {
            "runs": t.runs,
            "keys": t.keys,
            "attempts": t.attempts,
            "listing": t.listing,
            "days": t.days,
            "active": t.active,
            "pk": "namespace = ? AND run_id = ?",
            "apk": "namespace = ? AND run_id = ? AND attempt = ?",
        }

    def __call__(self, text: str, using: str = "") -> str:
        return Template(text).substitute(self._names, using=using)


class Queries:
    """Every CQL statement of the store (prepared on first use)."""

    def __init__(self, t: Tables) -> None:
        sub = _Template(t)
        self.head = sub(
            "SELECT version, header, journal, record, status, output, errors, "
            "updated_at FROM $runs WHERE $pk LIMIT 1"
        )
        self.body = sub(
            "SELECT kind, key, version, value, body, orders, written FROM $runs "
            "WHERE $pk AND kind IN ('c', 'j', 'o', 'r')"
        )
        self.journal_head = sub(
            "SELECT journal, WRITETIME(journal) AS stamp FROM $runs WHERE $pk LIMIT 1"
        )
        self.chunks = sub("SELECT key, value FROM $runs WHERE $pk AND kind = 'j'")
        self.chunk = sub(
            "INSERT INTO $runs (namespace, run_id, kind, key, value) VALUES (?, ?, 'j', ?, ?)"
        )
        self.drop_chunks = sub("DELETE FROM $runs WHERE $pk AND kind = 'j' AND key IN ?")
        self.create = sub(
            "INSERT INTO $runs (namespace, run_id, version, header, journal, "
            "record, status, output, errors, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        )
        # The run's anchor row (kind 'h'): written with the run and never removed, so a read of
        # some of the run's rows that names it always gets a row (with the static columns).
        self.anchor = sub("INSERT INTO $runs (namespace, run_id, kind, key) VALUES (?, ?, 'h', '')")
        self.result_context = sub(
            "SELECT kind, key, version, journal, value FROM $runs "
            "WHERE $pk AND kind IN ('c', 'h', 'j')"
        )
        self.result_records = sub(
            "SELECT kind, key, version, journal, header, value FROM $runs "
            "WHERE $pk AND (kind, key) IN ?"
        )
        self.cas = sub(
            "UPDATE $runs SET version = ?, header = ?, journal = ?, status = ?, "
            "output = ?, errors = ?, updated_at = ? WHERE $pk "
            "IF version = ? AND journal = null"
        )
        self.clear = sub("UPDATE $runs SET journal = null WHERE $pk IF journal = ?")
        self.commit = sub(
            "INSERT INTO $runs (namespace, run_id, kind, key, outcome) "
            "VALUES (?, ?, 'd', ?, ?) IF NOT EXISTS"
        )
        self.outcome = sub("SELECT outcome FROM $runs WHERE $pk AND kind = 'd' AND key = ?")
        # An attempt's lease: a partition of its own, with a TTL (lease + a day) on every write.
        self.claim = sub(
            "INSERT INTO $attempts (namespace, run_id, attempt, owner, lease_until) "
            "VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
        )
        self.take_over = sub(
            "UPDATE $attempts USING TTL ? SET owner = ?, lease_until = ? WHERE $apk "
            "IF owner = ? AND lease_until = ?"
        )
        self.extend = sub(
            "UPDATE $attempts USING TTL ? SET owner = ?, lease_until = ? WHERE $apk IF owner = ?"
        )
        self.lease = sub(
            "INSERT INTO $attempts (namespace, run_id, attempt, owner, lease_until) "
            "VALUES (?, ?, ?, ?, ?) USING TTL ?"
        )
        self.drop_outbox = sub("DELETE FROM $runs WHERE $pk AND kind = 'o' AND key IN ?")
        self.drop_run = sub("DELETE FROM $runs WHERE $pk")
        self.take_key = sub(
            "INSERT INTO $keys (namespace, idempotency_key, run_id) VALUES (?, ?, ?) IF NOT EXISTS"
        )
        self.list_run = sub(
            "INSERT INTO $listing (namespace, day, created_at, run_id) VALUES (?, ?, ?, ?)"
        )
        self.list_day = sub("INSERT INTO $days (namespace, day) VALUES (?, ?)")
        self.days = sub("SELECT day FROM $days WHERE namespace = ?")
        self.listing_first = sub(
            "SELECT created_at, run_id FROM $listing WHERE namespace = ? AND day = ? LIMIT ?"
        )
        self.listing_after = sub(
            "SELECT created_at, run_id FROM $listing WHERE namespace = ? "
            "AND day = ? AND (created_at, run_id) < (?, ?) LIMIT ?"
        )
        self.listing_all = sub("SELECT run_id FROM $listing WHERE namespace = ? AND day = ?")
        self.drop_listing = sub("DELETE FROM $listing WHERE namespace = ? AND day = ?")
        self.drop_days = sub("DELETE FROM $days WHERE namespace = ?")
        self.activate = sub("INSERT INTO $active (namespace, shard, run_id) VALUES (?, ?, ?)")
        self.deactivate = sub(
            "DELETE FROM $active WHERE namespace = ? AND shard = ? AND run_id = ?"
        )
        self.active = sub("SELECT run_id FROM $active WHERE namespace = ? AND shard = ?")
        self.drop_active = sub("DELETE FROM $active WHERE namespace = ? AND shard = ?")
        # The per-operation writes of a save, plain and ``USING TIMESTAMP ?`` (index: stamped).
        self._put = tuple(sub(
            "INSERT INTO $runs (namespace, run_id, kind, key, value, written) "
            "VALUES (?, ?, ?, ?, ?, ?)$using", using,
        ) for using in _USING)  # fmt: skip
        self._add = tuple(sub(
            "UPDATE $runs$using SET body = ?, orders = orders + ?, written = ? "
            "WHERE $pk AND kind = 'o' AND key = ?", using,
        ) for using in _USING)  # fmt: skip
        self._sent = tuple(
            sub("DELETE FROM $runs$using WHERE $pk AND kind = 'o' AND key = ?", using)
            for using in _USING
        )

    def put(self, stamped: bool) -> str:
        """A record or context row."""
        return self._put[stamped]

    def add(self, stamped: bool) -> str:
        """An outbox message (its order: the smallest of the orders it was added with)."""
        return self._add[stamped]

    def sent(self, stamped: bool) -> str:
        """An outbox message's removal."""
        return self._sent[stamped]
