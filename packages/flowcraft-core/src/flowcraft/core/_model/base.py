"""The common base of every document model: frozen, strict, no unknown fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """A frozen, strict pydantic model that rejects unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON-ready form (snake_case, defaults left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
