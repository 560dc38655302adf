"""plugin_registry.toml stays in step with the entry points and what they register."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mka_core.plugins import manager

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = tomllib.loads((ROOT / "plugin_registry.toml").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["mka"]


def test_catalogue_entries_name_real_entry_points():
    for entry in CATALOGUE["plugin"]:
        assert ENTRY_POINTS.get(entry["entry_point"]) == entry["module"], entry["name"]
        extras = set(PYPROJECT["project"]["optional-dependencies"])
        assert set(entry["extras"]) <= extras, entry["name"]


def test_every_entry_point_is_catalogued():
    catalogued = {entry["entry_point"] for entry in CATALOGUE["plugin"]}
    assert set(ENTRY_POINTS) == catalogued


def test_builtin_registrations_match_the_catalogue():
    reg = manager.registry()
    assert not [f.message for f in reg.failures if f.distribution == "mka"], "a built-in plugin failed to load"
    registered = {(r.kind, r.name, r.plugin.split(":", 1)[1]) for kind in manager.KINDS
                  for r in manager.registrations(kind) if r.distribution == "mka"}
    catalogued = {(e["kind"], e["name"], e["entry_point"]) for e in CATALOGUE["plugin"]}
    assert registered == catalogued


def test_weight_sets_have_the_required_fields():
    for entry in CATALOGUE["weights"]:
        for key in ("name", "family", "files", "source", "licence", "size", "sha256"):
            assert key in entry, (entry.get("name"), key)
