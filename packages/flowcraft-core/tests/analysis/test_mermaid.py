"""Mermaid rendering, compared exactly with golden files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flowcraft.core import Blueprint, parse_blueprint, to_mermaid

GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE = os.environ.get("FLOWCRAFT_UPDATE_GOLDEN") == "1"


def _blueprint() -> Blueprint:
    return parse_blueprint(
        {
            "id": "review",
            "nodes": [
                {"id": "fetch", "uses": "docs.fetch", "config": {"fallback": "cache"}},
                {"id": "cache", "uses": "docs.cache"},
                {"id": "approve", "uses": "flowcraft.wait"},
                {"id": "publish", "uses": "docs.publish"},
                {"id": "reject", "uses": "docs.reject"},
                {"id": "pause", "uses": "flowcraft.sleep", "params": {"seconds": 5}},
                {"id": "notify", "uses": "flowcraft.subflow", "params": {"blueprint": "notify"}},
                {
                    "id": "retry-loop",
                    "uses": "flowcraft.loop",
                    "params": {
                        "while": "input.attempts < 3",
                        "max_iterations": 3,
                        "body": {
                            "nodes": [
                                {"id": "try", "uses": "docs.try"},
                                {"id": "log", "uses": "docs.log"},
                            ],
                            "edges": [{"source": "try", "target": "log"}],
                        },
                    },
                },
                {"id": "each", "uses": "flowcraft.map", "params": {"uses": "docs.index"}},
            ],
            "edges": [
                {
                    "source": "fetch",
                    "target": "approve",
                    "condition": 'input.kind == "doc" && input.size > 0',
                },
                {"source": "approve", "target": "publish", "action": "approve"},
                {"source": "approve", "target": "reject", "action": "reject"},
                {"source": "publish", "target": "pause"},
                {"source": "pause", "target": "notify"},
                {
                    "source": "notify",
                    "target": "retry-loop",
                    "action": "sent",
                    "condition": "result.ok",
                },
                {"source": "retry-loop", "target": "each"},
            ],
        }
    )


STATES = {
    "fetch": "failed",
    "cache": "succeeded",
    "approve": "succeeded",
    "publish": "running",
    "reject": "skipped",
    "pause": "pending",
    "notify": "awaiting",
    "retry-loop": "cancelled",
}


@pytest.mark.parametrize(
    ("name", "states"), [("review.mmd", None), ("review-run.mmd", STATES)], ids=["plain", "run"]
)
def test_golden(name: str, states: dict[str, str] | None) -> None:
    rendered = to_mermaid(_blueprint(), states)
    path = GOLDEN / name
    if UPDATE:
        path.write_text(rendered, encoding="utf-8")
    assert rendered == path.read_text(encoding="utf-8")


def test_output_is_deterministic_and_directional() -> None:
    first = to_mermaid(_blueprint(), direction="LR")
    assert first == to_mermaid(_blueprint(), direction="LR")
    assert first.startswith("flowchart LR\n")


def test_unknown_state_or_node_is_api_misuse() -> None:
    with pytest.raises(ValueError, match="unknown node states"):
        to_mermaid(_blueprint(), {"fetch": "exploded"})
    with pytest.raises(ValueError, match="not in the blueprint"):
        to_mermaid(_blueprint(), {"ghost": "failed"})
