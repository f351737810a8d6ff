"""The bridge against vercel-workflow's World abstract class: fails loudly when it changes.

``PINNED`` is the abstract surface of the vercel-workflow release the bridge was written
for. A new, removed or re-signed abstract method fails here first, naming what moved, so
the bridge (and ``SUPPORTED_VERCEL_WORKFLOW``) is updated before a runtime meets it.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib.metadata import version

from flowcraft.core.world.vercel import SUPPORTED_VERCEL_WORKFLOW, VercelBridge
from vercel.workflow._internal import world as w

PINNED = {
    "create_queue_handler": "(self, queue_name_prefix, handler)",
    "events_create": "(self, run_id, data)",
    "events_list": "(self, run_id, *, pagination=None)",
    "get_deployment_id": "(self)",
    "hooks_get_by_token": "(self, token)",
    "queue": "(self, queue_name, message, *, deployment_id=None, idempotency_key=None, **kwargs)",
    "runs_get": "(self, run_id)",
    "steps_get": "(self, run_id, step_id)",
    "streams_close": "(self, run_id, name)",
    "streams_get": "(self, run_id, name, start_index=None)",
    "streams_get_chunks": "(self, run_id, name, *, limit=None, cursor=None)",
    "streams_get_info": "(self, run_id, name)",
    "streams_list": "(self, run_id)",
    "streams_write": "(self, run_id, name, chunk)",
}


def _shape(function: object) -> str:
    """A signature without annotations: names, kinds and defaults."""
    signature = inspect.signature(function)  # type: ignore[arg-type]
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def test_the_installed_vercel_workflow_is_in_the_supported_range() -> None:
    major, minor, *_ = (int(part) for part in version("vercel-workflow").split("."))
    assert SUPPORTED_VERCEL_WORKFLOW == ">=0.12,<0.13"
    assert (major, minor) == (0, 12)


def test_the_abstract_methods_are_the_pinned_ones() -> None:
    abstract = sorted(w.World.__abstractmethods__)
    assert abstract == sorted(PINNED), (
        "vercel-workflow's World changed its abstract methods: "
        f"new {sorted(set(abstract) - set(PINNED))}, gone {sorted(set(PINNED) - set(abstract))}"
    )


def test_each_abstract_signature_is_the_pinned_one() -> None:
    changed = {
        name: _shape(getattr(w.World, name))
        for name in PINNED
        if _shape(getattr(w.World, name)) != PINNED[name]
    }
    assert not changed, f"vercel-workflow's World re-signed: {changed}"


def test_the_bridge_implements_every_abstract_method() -> None:
    assert not getattr(VercelBridge, "__abstractmethods__", frozenset())
    for name in PINNED:
        assert getattr(VercelBridge, name) is not getattr(w.World, name), name


def test_the_bridge_accepts_every_call_the_abstract_signature_allows() -> None:
    for name in PINNED:
        ours = inspect.signature(getattr(VercelBridge, name)).parameters
        theirs = inspect.signature(getattr(w.World, name)).parameters
        for parameter in theirs.values():
            assert parameter.name in ours, f"{name} lacks {parameter.name}"
            mine = ours[parameter.name]
            assert mine.kind == parameter.kind, f"{name}.{parameter.name}: {mine.kind}"
            assert mine.default == parameter.default, f"{name}.{parameter.name}: {mine.default}"


def test_the_world_package_does_not_import_vercel_workflow() -> None:
    code = (
        "import sys, flowcraft.core.world; print(any(m.startswith('vercel') for m in sys.modules))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "False"
