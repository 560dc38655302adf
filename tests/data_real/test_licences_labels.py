"""Licences from Debian copyright files, the licence policy, label maps and the split by recording."""

from __future__ import annotations

import pytest

from mka_core.errors import InputError
from training.data.real.labelmap import DEFAULT_LABEL_MAP, load_label_map, parse_label_map
from training.data.real.licences import (
    canonical_licence,
    chosen_licence,
    licence_allowed,
    licence_of,
    parse_dep5,
)
from training.data.real.sources import parse_sources
from training.data.real.split import assign_splits

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2010 Someone
License: GPL-2+

Files: data/sounds/*.ogg
Copyright: 2011 Sound Person
           2012 Other Person
License: CC-BY-SA-3.0

Files: data/sounds/rain?loop.ogg data/sounds/free/*
Copyright: Nobody
License: CC0

Files: kits/My?Kit.tar
Copyright: Drummer
License: CC-BY-3.0

License: CC-BY-SA-3.0
 Long licence text that is not a Files paragraph.
"""


def test_dep5_last_matching_paragraph_decides():
    paragraphs = parse_dep5(COPYRIGHT)
    assert [p.licence for p in paragraphs] == ["GPL-2+", "CC-BY-SA-3.0", "CC0", "CC-BY-3.0"]
    assert licence_of(paragraphs, "src/main.c").licence == "GPL-2+"
    found = licence_of(paragraphs, "data/sounds/step.ogg")
    assert found.licence == "CC-BY-SA-3.0" and "Sound Person" in found.copyright and "Other Person" in found.copyright
    # '?' matches one character (a space in an installed name), '*' crosses folders.
    assert licence_of(paragraphs, "data/sounds/rain loop.ogg").licence == "CC0"
    assert licence_of(paragraphs, "data/sounds/free/a/b.ogg").licence == "CC0"
    assert licence_of(paragraphs, "kits/My Kit.tar").licence == "CC-BY-3.0"
    assert licence_of(parse_dep5("no paragraphs here"), "x") is None


@pytest.mark.parametrize("name, canonical", [
    ("CC0", "CC0-1.0"), ("CC-BY-SA-3.0-us", "CC-BY-SA-3.0"), ("cc-by-sa-3.0+", "CC-BY-SA-3.0"), ("CC-BY-SA-3", "CC-BY-SA-3.0"),
    ("Expat", "MIT"), ("CC-BY-4.0", "CC-BY-4.0"), ("public-domain", "public-domain"), ("GPL-2+", "GPL-2+"),
])
def test_canonical_licence_names(name, canonical):
    assert canonical_licence(name) == canonical


@pytest.mark.parametrize("name, chosen", [
    ("CC0", "CC0-1.0"), ("MIT", "MIT"), ("CC-BY-3.0", "CC-BY-3.0"), ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
    ("GPL-2+", None), ("LGPL-2.1+", None), ("CC-BY-NC-3.0", None), ("CC-BY-ND-4.0", None), ("", None),
    ("GPL-2+ with composition exception", None),
    # A choice is usable when one branch is, and the most permissive branch is recorded.
    ("CC-BY-SA-3.0 or CC-BY-3.0", "CC-BY-3.0"), ("CC-BY-SA-3.0 or GPL-3 or GPL-2", "CC-BY-SA-3.0"),
    ("GPL-2+ OR CC-BY-SA-3.0", "CC-BY-SA-3.0"), ("zlib or GPL-2 or CC-BY-3.0", "CC-BY-3.0"),
])
def test_licence_policy(name, chosen):
    assert chosen_licence(name) == chosen
    assert licence_allowed(name) == (chosen is not None)


def test_overrides_and_copyright_paths(tmp_path):
    (tmp_path / "copyright").write_text(COPYRIGHT)
    (tmp_path / "root").mkdir()
    sources = parse_sources({"source": [{
        "name": "demo", "root": "root", "copyright": "copyright", "copyright_path": [["^", "data/"]],
        "override": [{"pattern": "sounds/special/*", "licence": "CC-BY-4.0", "author": "Special Author"}],
    }]}, tmp_path, "test")
    source = sources[0]
    assert source.attribution("sounds/step.ogg")[0] == "CC-BY-SA-3.0"
    assert source.attribution("sounds/special/x.ogg") == ("CC-BY-4.0", "Special Author")
    assert source.attribution("other.wav")[0] == "GPL-2+"


def test_sources_file_errors(tmp_path):
    with pytest.raises(InputError, match="no \\[\\[source\\]\\]"):
        parse_sources({}, tmp_path, "s.toml")
    with pytest.raises(InputError, match="states no licence"):
        parse_sources({"source": [{"name": "a", "root": "x"}]}, tmp_path, "s.toml")
    with pytest.raises(InputError, match="more than once"):
        parse_sources({"source": [{"name": "a", "root": "x", "licence": "CC0"}] * 2}, tmp_path, "s.toml")


MINIMAL = {"class": {"rain": {"np": ["rain"], "clause": ["rain falls"]}},
           "rule": [{"pattern": "*/rain/*", "class": "rain"}]}


def test_label_map_rules_first_match_and_named_groups():
    label_map = parse_label_map({
        "class": {"steps": {"np": ["footsteps on {SURFACE}"], "clause": ["someone walks"],
                            "surfaces": {"gravel": ["gravel"]}, "special": {"surface=gravel": ["crunching steps"]}},
                  "rain": MINIMAL["class"]["rain"]},
        "rule": [{"regex": "/music/", "drop": "music"},
                 {"regex": "step_(?P<surface>Gravel|Sand)", "class": "steps", "tags": {"pace": "walk"}},
                 {"pattern": "src/rain/*", "class": "rain"}],
    }, "test")
    assert label_map.match("src/music/step_gravel.ogg").drop == "music"
    rule = label_map.match("src/a/step_Gravel_1.ogg")
    assert rule.label == "steps" and rule.tags_for("src/a/step_Gravel_1.ogg") == {"pace": "walk", "surface": "gravel"}
    assert label_map.match("src/rain/deep/x.wav").label == "rain"  # '*' crosses folders
    assert label_map.match("src/other.wav") is None
    assert label_map.classes["steps"].vocab["special"] == {("surface", "gravel"): ["crunching steps"]}


@pytest.mark.parametrize("change, message", [
    ({"rule": [{"pattern": "*", "class": "snow"}]}, "no \\[class.snow\\]"),
    ({"rule": [{"pattern": "*", "regex": "x", "class": "rain"}]}, "exactly one of 'pattern'"),
    ({"rule": [{"pattern": "*"}]}, "exactly one of 'class' or 'drop'"),
    ({"rule": [{"regex": "(", "class": "rain"}]}, "invalid regex"),
    ({"class": {"rain": {"np": ["rain"]}}}, "needs 'clause'"),
    ({"class": {"Rain": {"np": ["rain"], "clause": ["x"]}}}, "lower-case"),
    ({"rule": []}, "no \\[\\[rule\\]\\]"),
])
def test_label_map_errors(change, message):
    with pytest.raises(InputError, match=message):
        parse_label_map({**MINIMAL, **change}, "test")


def test_checked_in_label_map_loads_with_thirty_classes():
    label_map = load_label_map(DEFAULT_LABEL_MAP)
    assert len(label_map.classes) >= 30
    assert label_map.match("0ad-data/audio/actor/singlesteps/fs_gravel3.ogg").tags_for("x") == {"surface": "gravel"}
    assert label_map.match("0ad-data/audio/music/Sunrise.ogg").drop


def test_split_is_by_key_deterministic_and_covers_classes():
    items = [(f"rec{k}", "a" if k % 2 else "b") for k in range(40)]
    first = assign_splits(items, heldout=0.15, valid=0.05)
    assert first == assign_splits(list(reversed(items)), heldout=0.15, valid=0.05)
    for label in "ab":
        assert any(first[key] == "heldout" for key, lab in items if lab == label)
    # Adding recordings of another class does not move these ones.
    more = assign_splits(items + [(f"x{k}", "c") for k in range(10)], heldout=0.15, valid=0.05)
    assert all(more[key] == first[key] for key, _ in items)
    # A class with three recordings still gets one held out.
    small = assign_splits([("p", "z"), ("q", "z"), ("r", "z")], heldout=0.01, valid=0.0)
    assert sorted(small.values()).count("heldout") == 1
    # Every class keeps a training recording, even when the hash sent them all elsewhere.
    for key in ("k0", "k1", "k2", "k3"):
        assert assign_splits([(key, "solo")], heldout=0.9, valid=0.05) == {key: "train"}
    assert "train" in assign_splits([("a", "pair"), ("b", "pair")], heldout=0.98, valid=0.01).values()
    # A thin class trains on two takes and holds one out, wherever the hash sent them.
    thin = assign_splits([("p", "z"), ("q", "z"), ("r", "z")], heldout=0.9, valid=0.05)
    assert sorted(thin.values()) == ["heldout", "train", "train"]
    assert sorted(assign_splits([("p", "z"), ("q", "z"), ("r", "z")], heldout=0.9, valid=0.05,
                                min_train=1).values()).count("train") == 1


def test_debian_sources_name_their_packages_and_missing_ones_are_an_error(monkeypatch):
    from training.data.real import debian
    from training.data.real.sources import load_sources

    names = debian.packages()
    for package in ("0ad-data", "minetest-data", "supertuxkart-data", "redeclipse-data", "hydrogen-drumkits",
                    "sound-theme-freedesktop", "fluid-soundfont-gm", "fluidsynth"):
        assert package in names
    sources = load_sources(debian.DEBIAN_SOURCES)
    assert {source.package for source in sources} <= set(names)
    assert all(source.copyright or source.licence for source in sources)
    monkeypatch.setattr(debian, "installed", lambda package: package != "minetest-data")
    with pytest.raises(InputError, match="apt-get install -y --no-install-recommends minetest-data"):
        debian.ensure_packages(install=False)
