"""Bad inputs to `mka convert`: one clear sentence, a non-zero exit, no output folder, nothing executed."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

from mka_core.convert.accounting import Ledger
from mka_core.errors import WeightsError
from tests.convert.conftest import assert_one_sentence_error, cli


def no_leftovers(parent: pathlib.Path, name: str) -> bool:
    """Neither the output folder nor a staging folder of it exists."""
    return not (parent / name).exists() and not any(p.name.startswith(f".{name}.") for p in parent.iterdir())


def test_random_bytes_are_not_a_checkpoint(tmp_path, bigvgan_dir, tokenizer_dir):
    bad = tmp_path / "maa1_full.ckpt"
    bad.write_bytes(os.urandom(4096))
    code, _, err = cli("convert", "maa1", "--ckpt", bad, "--vocoder", bigvgan_dir, "--tokenizer", tokenizer_dir,
                       "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "not a PyTorch checkpoint", "download it again")
    assert no_leftovers(tmp_path, "out")


def test_truncated_checkpoint(tmp_path, inpaint7_ckpt):
    cut = tmp_path / "inpaint7.ckpt"
    with inpaint7_ckpt.open("rb") as src:
        cut.write_bytes(src.read(inpaint7_ckpt.stat().st_size // 3))
    code, _, err = cli("convert", "maa-b", "--ckpt", cut, "--kind", "inpaint", "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "truncated or corrupt")
    assert no_leftovers(tmp_path, "out")


def test_empty_and_missing_checkpoints(tmp_path, bigvgan_dir, tokenizer_dir):
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    for path, words in ((empty, "empty"), (tmp_path / "nope.ckpt", "does not exist")):
        code, _, err = cli("convert", "maa1", "--ckpt", path, "--vocoder", bigvgan_dir, "--tokenizer", tokenizer_dir,
                           "--out", tmp_path / "out")
        assert_one_sentence_error(code, err, words)
    assert no_leftovers(tmp_path, "out")


class Payload:
    """Unpickling this would write a marker file: the attack a weights-only load must stop."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code ran"))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path, bigvgan_dir, tokenizer_dir, maa1_ckpt):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "payload": Payload(marker)}, evil)
    assert not marker.exists()
    code, _, err = cli("convert", "maa1", "--ckpt", evil, "--vocoder", bigvgan_dir, "--tokenizer", tokenizer_dir,
                       "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "Refusing to load", "could run code")
    assert not marker.exists()
    assert no_leftovers(tmp_path, "out")
    # The same payload as the vocoder file.
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "args.yml").write_text((bigvgan_dir / "args.yml").read_text())
    torch.save({"generator": Payload(marker)}, voc / "best_netG.pt")
    code, _, err = cli("convert", "maa1", "--ckpt", maa1_ckpt, "--vocoder", voc, "--tokenizer", tokenizer_dir,
                       "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "Refusing to load", "best_netG.pt")
    assert not marker.exists()
    assert no_leftovers(tmp_path, "out")


def test_a_family_b_checkpoint_given_to_maa1_is_named(tmp_path, inpaint7_ckpt, bigvgan_dir, tokenizer_dir):
    code, _, err = cli("convert", "maa1", "--ckpt", inpaint7_ckpt, "--vocoder", bigvgan_dir, "--tokenizer", tokenizer_dir,
                       "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "family-B inpainting checkpoint", "mka convert maa-b --kind inpaint")
    assert no_leftovers(tmp_path, "out")


def test_wrong_kind_for_maa_b_is_named(tmp_path, maa1_ckpt, ta54_ckpt):
    code, _, err = cli("convert", "maa-b", "--ckpt", maa1_ckpt, "--kind", "i2a", "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "BERT + projection text encoder", "mka convert maa1")
    code, _, err = cli("convert", "maa-b", "--ckpt", ta54_ckpt, "--kind", "inpaint", "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "image-to-audio", "--kind i2a")
    assert no_leftovers(tmp_path, "out")


def test_a_vocoder_checkpoint_given_as_ckpt_is_named(tmp_path, bigvgan_dir):
    code, _, err = cli("convert", "maa-b", "--ckpt", bigvgan_dir / "best_netG.pt", "--kind", "i2a", "--out", tmp_path / "o")
    assert_one_sentence_error(code, err, "BigVGAN vocoder checkpoint", "--vocoder")


def test_vocoder_folder_without_its_files(tmp_path, maa1_ckpt, tokenizer_dir):
    empty = tmp_path / "bigvgan"
    empty.mkdir()
    code, _, err = cli("convert", "maa1", "--ckpt", maa1_ckpt, "--vocoder", empty, "--tokenizer", tokenizer_dir,
                       "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "lacks args.yml and best_netG.pt")
    assert no_leftovers(tmp_path, "out")


def test_missing_tokenizer_offline_says_where_to_put_it(tmp_path, maa1_ckpt, bigvgan_dir):
    from mka_core.weights import mka_home

    code, _, err = cli("convert", "maa1", "--ckpt", maa1_ckpt, "--vocoder", bigvgan_dir, "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "not available offline", "vocab.txt",
                              str(mka_home() / "weights" / "bert-base-uncased"), "--tokenizer DIR")
    empty = tmp_path / "tok"
    empty.mkdir()
    code, _, err = cli("convert", "maa1", "--ckpt", maa1_ckpt, "--vocoder", bigvgan_dir, "--tokenizer", empty,
                       "--out", tmp_path / "out")
    assert_one_sentence_error(code, err, "lacks vocab.txt")
    assert no_leftovers(tmp_path, "out")


def test_existing_output_is_kept_without_overwrite(tmp_path, maa1_ckpt, bigvgan_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli("convert", "maa1", "--ckpt", maa1_ckpt, "--vocoder", bigvgan_dir, "--out", out)
    assert_one_sentence_error(code, err, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"


def test_interrupted_conversion_leaves_nothing(tmp_path, inpaint7_ckpt, monkeypatch):
    from mka_core import pipeline_io

    real = pipeline_io.save_module
    calls = []

    def save_then_interrupt(module, directory, **kwargs):
        real(module, directory, **kwargs)
        calls.append(directory)
        if len(calls) == 2:  # the VAE and the U-Net are on disk: Ctrl-C now
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_io, "save_module", save_then_interrupt)
    code, _, err = cli("convert", "maa-b", "--ckpt", inpaint7_ckpt, "--kind", "inpaint", "--out", tmp_path / "out")
    assert code == 130 and "interrupted" in err
    assert calls and no_leftovers(tmp_path, "out")


def test_unclaimed_tensors_are_named():
    ledger = Ledger("x.ckpt", {"model.diffusion_model.a": torch.zeros(1), "mystery.weight": torch.zeros(2)})
    ledger.use("model.diffusion_model.a", "unet:a")
    with pytest.raises(WeightsError, match="1 tensors that this conversion does not know \\(mystery.weight\\)"):
        ledger.check_complete()


def test_missing_and_misshapen_tensors_name_the_component():
    from mka_core.convert.common import build_filled
    from mka_core.models.unet import UNet, UNetConfig

    config = UNetConfig.preset("tiny")
    state = UNet(config).state_dict()
    partial = dict(state)
    partial.pop("out.2.weight")
    with pytest.raises(WeightsError, match="cannot fill the mka U-Net: missing 1 tensors \\(out.2.weight\\)"):
        build_filled(UNet, config, partial, "U-Net", "x.ckpt")
    wrong = dict(state, **{"out.2.bias": torch.zeros(5)})
    with pytest.raises(WeightsError, match="'out.2.bias' has shape \\[5\\]"):
        build_filled(UNet, config, wrong, "U-Net", "x.ckpt")
    filled = build_filled(UNet, config, state, "U-Net", "x.ckpt")
    assert all(torch.equal(filled.state_dict()[k], v) for k, v in state.items())
