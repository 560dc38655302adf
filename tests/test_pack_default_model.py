"""tools/pack_default_model.py: what it writes is a loadable float16 pipeline with the licence,
attribution and chosen guidance recorded, and a bad request leaves the destination untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "pack_default_model.py"


def pack(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_pack_records_licence_attribution_guidance_and_halves_weights(tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ATTRIBUTION.md").write_text("# credits\n")
    (corpus / "ATTRIBUTION.tsv").write_text("file\tauthor\tlicence\n")
    licence = tmp_path / "LICENSE.txt"
    licence.write_text("CC-BY-SA-4.0 text\n")
    dest = tmp_path / "packed"
    result = pack(tiny_model_dir, dest, "--licence", "CC-BY-SA-4.0", "--licence-text", licence,
                  "--attribution", corpus, "--guidance", "7", "--origin", "trained:default-model:real-corpus")
    assert result.returncode == 0, result.stderr
    index = json.loads((dest / "model_index.json").read_text())
    assert index["pipeline"]["licence"] == "CC-BY-SA-4.0"
    assert index["pipeline"]["defaults"]["guidance"] == 7.0
    assert index["pipeline"]["origin"] == "trained:default-model:real-corpus"
    assert (dest / "LICENSE.txt").read_text() == "CC-BY-SA-4.0 text\n"
    assert (dest / "ATTRIBUTION.tsv").is_file() and (dest / "ATTRIBUTION.md").is_file()
    dtypes = {t.dtype for path in dest.rglob("*.safetensors") for t in load_file(str(path)).values() if t.dim() > 0
              and t.is_floating_point()}
    assert dtypes == {torch.float16}

    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(dest, device="cpu")
    assert pipe.config.defaults.guidance == 7.0
    out = pipe(["a dog barking"], duration=0.5, steps=2, seed=0)
    assert torch.isfinite(out.waveforms).all()


def test_pack_refuses_a_guidance_below_one_and_keeps_the_destination(tmp_path, tiny_model_dir):
    dest = tmp_path / "packed"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    result = pack(tiny_model_dir, dest, "--guidance", "0.5")
    assert result.returncode != 0 and "--guidance 0.5" in result.stderr
    assert (dest / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".packed.tmp-*"))
