"""Frames: where a node instance runs.

A frame is a path of steps, one per enclosing construct, rendered as text: ``""`` is the root,
``"L#2"`` is iteration 2 of loop ``L``, ``"L#2/M[5]"`` item 5 of map ``M`` inside it. When a
construct is retried, its attempt is part of the step (``"M@2[5]"``), so instances of different
attempts never share a key. Node-instance identity, join arrivals, message dedup ids and
idempotency keys all include the frame.
"""

from __future__ import annotations

ROOT = ""

#: A node instance: (node id, frame).
InstanceKey = tuple[str, str]


def _step(construct: str, attempt: int) -> str:
    return construct if attempt <= 1 else f"{construct}@{attempt}"


def loop_frame(parent: str, loop: str, attempt: int, iteration: int) -> str:
    """The frame of ``iteration`` of loop node ``loop`` running in ``parent``."""
    return _join(parent, f"{_step(loop, attempt)}#{iteration}")


def map_frame(parent: str, map_node: str, attempt: int, index: int) -> str:
    """The frame of item ``index`` of map node ``map_node`` running in ``parent``."""
    return _join(parent, f"{_step(map_node, attempt)}[{index}]")


def _join(parent: str, step: str) -> str:
    return step if parent == ROOT else f"{parent}/{step}"


def instance_id(run_id: str, key: InstanceKey) -> str:
    """A stable, printable id of a node instance in a run (``run:node@frame``)."""
    node, frame = key
    return f"{run_id}:{node}" if frame == ROOT else f"{run_id}:{node}@{frame}"


def attempt_id(run_id: str, key: InstanceKey, attempt: int) -> str:
    """A stable id of one attempt of a node instance (message dedup ids, idempotency keys)."""
    return f"{instance_id(run_id, key)}#{attempt}"
