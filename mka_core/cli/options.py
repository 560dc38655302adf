"""Parsing helpers shared by commands: ``KEY=VALUE`` option lists."""

from __future__ import annotations

import json
from typing import Any

from mka_core.errors import InputError


def parse_key_values(items: list[str] | None, what: str = "option") -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as JSON when they can be)."""
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"The {what} '{item}' is not KEY=VALUE.")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise InputError(f"The {what} '{item}' has an empty key.")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result
