"""tools/reference_parity.py: the helpers it prints with, and its command line (the reference run needs real weights)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[2] / "tools" / "reference_parity.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("reference_parity", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_max_rel_is_relative_to_the_reference(tool):
    theirs = torch.tensor([2.0, -4.0])
    assert tool.max_rel(torch.tensor([2.0, -4.0]), theirs) == 0.0
    assert tool.max_rel(torch.tensor([2.4, -4.0]), theirs) == pytest.approx(0.1)
    with pytest.raises(SystemExit, match="shape mismatch"):
        tool.max_rel(torch.zeros(3), theirs)


def test_latent_width_follows_gen_wav(tool):
    assert [tool.latent_width(s) for s in (10, 5, 1, 9.984)] == [80, 40, 8, 80]


def test_help_names_every_input(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--ref-repo", "--ckpt", "--vocoder", "--mka-model", "--steps", "--guidance"):
        assert flag in text
