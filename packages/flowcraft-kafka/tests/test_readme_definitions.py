"""The README's CQL and topics are exactly what ``ensure_schema`` and ``ensure_topics`` create."""

from __future__ import annotations

import re
from pathlib import Path

from flowcraft.kafka._tables import Tables
from flowcraft.kafka._topics import TopicNames

README = Path(__file__).resolve().parents[1] / "README.md"


def _normal(statement: str) -> str:
    return " ".join(statement.replace("(", " ( ").replace(")", " ) ").split()).rstrip(";")


def _readme_block(heading: str, language: str) -> str:
    pattern = rf"### {heading}\n.*?```{language}\n(.*?)```"
    match = re.search(pattern, README.read_text(), flags=re.S)
    assert match is not None, f"no {language} block under '### {heading}'"
    return match.group(1)


def test_the_readme_tables_are_the_ones_ensure_schema_creates() -> None:
    statements = [s for s in _readme_block("Tables", "sql").split(";") if s.strip()]
    tables = [_normal(s) for s in statements if "CREATE TABLE" in s]
    assert tables == [_normal(ddl) for ddl in Tables("flowcraft").ddl()]


def test_the_readme_topics_are_the_ones_ensure_topics_creates() -> None:
    block = _readme_block("Topics", "bash")
    listed = re.search(r"for t in (.*?); do", block, flags=re.S)
    assert listed is not None
    names = listed.group(1).replace("\\", " ").split()
    assert names == list(TopicNames("ns-jobs").all)
