"""Catalogue files fetched from plain https addresses (the PANNs weights): continued after a stop, placed, checked."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from mka_core.errors import WeightsError
from mka_core.hub import fetch
from mka_core.hub.catalogue import get_entry
from mka_core.hub.pull import _pull_one

WEIGHTS = "Cnn14_mAP=0.431.pth"
LABELS = "class_labels_indices.csv"


def panns_entry(hub):
    """The catalogue's panns-cnn14 entry with its addresses pointing at the local server."""
    return dataclasses.replace(get_entry("panns-cnn14"), url_files={WEIGHTS: f"{hub.url}/plain/cnn14.pth",
                                                                    LABELS: f"{hub.url}/plain/labels.csv"})


def test_an_address_file_continues_from_the_partial_download(hub, tmp_path):
    data = bytes(range(256)) * 1200
    hub.plain["cnn14.pth"], hub.plain["labels.csv"] = data, b"index,mid,display_name\n0,/m/0,Dog\n"
    entry = panns_entry(hub)
    partial = fetch.url_cache() / entry.name / f"{WEIGHTS}.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:100_000])  # what a killed pull left
    done = _pull_one(entry, None, overwrite=False)
    assert [r for m, p, r in hub.log if p == "cnn14.pth"] == ["bytes=100000-"]
    placed = tmp_path / "home" / "weights" / "panns-cnn14"
    assert done.location == placed and (placed / WEIGHTS).read_bytes() == data and not partial.exists()
    record = json.loads((tmp_path / "home" / "weights" / "checksums.json").read_text())
    assert record["panns-cnn14"][WEIGHTS] == hashlib.sha256(data).hexdigest()  # trusted on first use, then recorded


def test_an_address_that_answers_404_is_one_sentence(hub, tmp_path):
    hub.plain["labels.csv"] = b"index,mid,display_name\n"
    with pytest.raises(WeightsError, match="answered HTTP 404") as info:
        _pull_one(panns_entry(hub), None, overwrite=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "home" / "weights" / "panns-cnn14").exists()
