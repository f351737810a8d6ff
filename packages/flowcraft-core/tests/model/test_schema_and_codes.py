"""The exported JSON Schema and the table of problem codes."""

from __future__ import annotations

import re
from pathlib import Path

from flowcraft.core import ALL_CODES, blueprint_json_schema

README = Path(__file__).parents[2] / "README.md"


def test_schema_describes_the_canonical_format() -> None:
    schema = blueprint_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["required"] == ["id"]
    assert schema["additionalProperties"] is False
    node = schema["$defs"]["Node"]
    assert set(node["properties"]) == {"id", "uses", "params", "inputs", "config"}
    retry = schema["$defs"]["RetryPolicy"]["properties"]
    assert retry["max_attempts"]["minimum"] == 1
    rules = {rule["if"]["properties"]["uses"]["const"]: rule["then"] for rule in node["allOf"]}
    assert rules["flowcraft.loop"]["properties"]["params"] == {"$ref": "#/$defs/LoopSpec"}
    loop = schema["$defs"]["LoopSpec"]
    assert {"while", "max_iterations"} <= set(loop["required"])


def test_codes_and_names_are_unique_and_well_formed() -> None:
    assert len({c.code for c in ALL_CODES}) == len(ALL_CODES)
    assert len({c.name for c in ALL_CODES}) == len(ALL_CODES)
    assert all(re.fullmatch(r"FC\d{3}", c.code) for c in ALL_CODES)
    assert all(c.severity != "error" for c in ALL_CODES if c.code.startswith("FC5"))


def test_readme_documents_every_code() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [c.code for c in ALL_CODES if f"`{c.code}` | `{c.name}`" not in text]
    assert missing == []
