"""Typed params of the built-in node kinds: wait, sleep, subflow, map and loop (DESIGN §4.1).

A built-in node keeps its params as plain JSON in ``Node.params`` (so documents round-trip
exactly); these models are the typed view the loader validates and the engine reads, through
``node.loop_spec()``, ``node.map_spec()`` and friends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from flowcraft.core._model.base import FrozenModel
from flowcraft.core._model.graph import Graph, Inputs
from flowcraft.core._model.kinds import LOOP, MAP, SLEEP, SUBFLOW, WAIT
from pydantic import AwareDatetime, Field, JsonValue, model_validator

Mapping_ = Annotated[dict[str, str], Field(strict=False)]


class WaitSpec(FrozenModel):
    """``flowcraft.wait``: suspend until resumed.

    Attributes:
        prompt: Optional text for whoever resumes the node.
    """

    prompt: str | None = None


class SleepSpec(FrozenModel):
    """``flowcraft.sleep``: a durable timer; exactly one of ``seconds`` or ``until``.

    Attributes:
        seconds: How long to sleep.
        until: When to wake up (ISO-8601 with a time zone).
    """

    seconds: float | None = Field(default=None, ge=0)
    until: Annotated[AwareDatetime | None, Field(strict=False)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("a sleep needs exactly one of `seconds` or `until`")
        return self


class SubflowSpec(FrozenModel):
    """``flowcraft.subflow``: run another blueprint as a child run.

    Attributes:
        blueprint: Id of the child blueprint.
        input: How the child's input is built from this node's input (key or mapping).
        output: How this node's output is built from the child's result (key or mapping).
    """

    blueprint: str = Field(min_length=1)
    input: Inputs | None = None
    output: Inputs | None = None


class MapSpec(FrozenModel):
    """``flowcraft.map``: apply an implementation or a body to each item of a list.

    Attributes:
        uses: Registry key of the per-item implementation (or give ``body``).
        body: Inline sub-graph run once per item (or give ``uses``).
        items: Expression selecting the list; the node's input when absent.
        concurrency: Most items in flight at once.
    """

    uses: str | None = Field(default=None, min_length=1)
    body: Graph | None = None
    items: str | None = None
    concurrency: int = Field(default=10, ge=1, le=100_000)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.uses is None) == (self.body is None):
            raise ValueError("a map needs exactly one of `uses` or `body`")
        return self


class LoopSpec(FrozenModel):
    """``flowcraft.loop``: repeat a body while a condition holds, at most ``max_iterations``.

    Attributes:
        body: Inline sub-graph run once per iteration (or give ``blueprint``).
        blueprint: Id of a blueprint run once per iteration (or give ``body``).
        while_: Expression checked before each iteration (key ``while`` in documents).
        max_iterations: Mandatory limit; reaching it while ``while`` holds fails the loop.
    """

    body: Graph | None = None
    blueprint: str | None = Field(default=None, min_length=1)
    while_: str = Field(alias="while")
    max_iterations: int = Field(ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.body is None) == (self.blueprint is None):
            raise ValueError("a loop needs exactly one of `body` or `blueprint`")
        return self


ConstructSpec = WaitSpec | SleepSpec | SubflowSpec | MapSpec | LoopSpec
"""The typed params of any built-in kind."""

SPEC_TYPES: Mapping[str, type[ConstructSpec]] = {
    WAIT: WaitSpec,
    SLEEP: SleepSpec,
    SUBFLOW: SubflowSpec,
    MAP: MapSpec,
    LOOP: LoopSpec,
}
"""The params model of each built-in kind."""


def parse_spec(
    uses: str, params: Mapping[str, JsonValue] | Mapping[str, Any]
) -> ConstructSpec | None:
    """Return the typed params of a built-in kind, or ``None`` for a registry ``uses``.

    Raises:
        pydantic.ValidationError: The params do not fit the kind.
    """
    spec_type = SPEC_TYPES.get(uses)
    return None if spec_type is None else spec_type.model_validate(params)
