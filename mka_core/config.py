"""Configuration base class shared by every mka component.

Every config in mka (models, samplers, conditioner options, recipes) is a pydantic
model that rejects unknown keys: a misspelled option is an error, never a silent
default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def to_json_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the config (what goes into ``config.json``)."""
        return self.model_dump(mode="json")
