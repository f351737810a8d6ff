"""The README's ``az`` definitions describe exactly what ``ensure_schema`` creates."""

from __future__ import annotations

import json
import re
from pathlib import Path

from flowcraft.azure._schema import INDEXING_POLICY, Names

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Prerequisites and resources (`az` CLI)")
    return text[start : text.index("### Role assignments", start)]


def test_the_readme_indexing_policy_is_the_one_ensure_schema_sets() -> None:
    match = re.search(r"`contexts-indexing.json`.*?```json\n(.*?)```", _section(), flags=re.S)
    assert match is not None
    assert json.loads(match.group(1)) == INDEXING_POLICY


def test_the_readme_creates_the_queues_and_containers_of_the_default_namespace() -> None:
    names = Names.of("flowcraft")
    commands = _section()
    queues = re.findall(r"az storage queue create .*?--name (\S+)", commands)
    assert sorted(queues) == sorted([names.jobs, names.poison])
    containers = dict(re.findall(
        r"az cosmosdb sql container create .*?-n (\S+) \\\n\s+--partition-key-path (\S+)", commands
    ))  # fmt: skip
    assert containers == {names.contexts: "/runId", names.statuses: "/key"}
    assert "--ttl -1 --idx @contexts-indexing.json" in commands  # TTL on, no default
