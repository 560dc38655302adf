"""The pipeline builds each conditioner once per (name, options) and checks the space first (issue 19, item 2)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mka_core.errors import SpaceMismatchError, WeightsError
from mka_core.pipeline import Pipeline
from mka_core.plugins import manager
from tests.conftest import run_cli
from tests.core import fake_letters
from tests.plugins.fake_dists import on_sys_path


@pytest.fixture
def letters_model(tmp_path, monkeypatch):
    """A tiny model trained in the space of a third-party conditioner (letter-counts, 26-d)."""
    from mka_core.presets import build_pipeline

    root = tmp_path / "site"
    fake_letters.install(root)
    monkeypatch.setenv("MKA_LOAD_PLUGINS", fake_letters.DISTRIBUTIONS)
    with on_sys_path(root):
        manager.reset_plugins()
        build_pipeline("tiny", cond="letter-counts").save_pretrained(tmp_path / "letters")
        yield tmp_path / "letters"
    manager.reset_plugins()


def built() -> list[int]:
    return sys.modules["fake_letters"].BUILT


def test_each_name_and_options_is_built_once(letters_model):
    pipe = Pipeline.from_pretrained(letters_model, device="cpu")
    assert pipe.conditioner_for(None) is pipe.conditioner
    assert pipe.conditioner_for("letter-counts") is pipe.conditioner
    before = len(built())
    three = pipe.conditioner_for("letter-counts", {"max_words": 3})
    assert three.options.max_words == 3 and three is not pipe.conditioner
    assert pipe.conditioner_for("letter-counts", {"max_words": 3}) is three
    assert len(built()) == before + 1
    four = pipe.conditioner_for("letter-counts", {"max_words": 4})
    assert four is not three and len(built()) == before + 2
    # Generating through the Python API reuses the cached one too.
    pipe(["a dog"], duration=0.5, steps=1, seed=0)
    assert len(built()) == before + 2


def test_a_conditioner_of_another_space_is_refused_before_its_weights_load(letters_model):
    # bert's default weights (bert-base-uncased) are not on this machine: the space decides first.
    pipe = Pipeline.from_pretrained(letters_model, device="cpu")
    with pytest.raises(SpaceMismatchError) as info:
        pipe.conditioner_for("bert")
    message = str(info.value)
    assert "letter-counts (26-d, sequence)" in message and "'bert'" in message and "768" in message
    assert "Conditioners that fit: letter-counts" in message

    result = run_cli("generate", "--model", letters_model, "--cond", "bert", "a dog", "--steps", "1",
                     "--duration", "0.5", "-o", letters_model.parent / "x.wav")
    assert result.returncode == 2 and "embedding space" in result.stderr, result.stderr
    assert "not available offline" not in result.stderr and "Traceback" not in result.stderr


def test_the_bert_weights_really_are_absent_here():
    # The premise of the test above: loading bert's default weights here fails, so a space
    # mismatch can only be reported if it is checked before they load.
    from mka_plugins.conditioners.bert import BertConditioner

    with pytest.raises(WeightsError, match="not available offline"):
        BertConditioner(weights="bert-base-uncased")


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    pytest.importorskip("open_clip")
    from mka_core.presets import build_pipeline

    manager.reset_plugins()
    folder = tmp_path_factory.mktemp("models") / "tiny-clip"
    build_pipeline("tiny", cond="clip-text", seed=0).save_pretrained(folder)
    return folder


def test_generate_with_clip_image_builds_the_image_tower_once(clip_model, tmp_path, monkeypatch):
    import open_clip
    from PIL import Image

    from mka_plugins.conditioners.clip import ClipImageConditioner

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    towers: list[str] = []
    images: list[int] = []
    real_create = open_clip.create_model_and_transforms
    real_init = ClipImageConditioner.__init__

    def counting_create(*args, **kwargs):
        towers.append(str(args[0]) if args else "")
        return real_create(*args, **kwargs)

    def counting_init(self, *args, **kwargs):
        images.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", counting_create)
    monkeypatch.setattr(ClipImageConditioner, "__init__", counting_init)
    result = run_cli("generate", "--model", clip_model, "--cond", "clip-image", image, "--steps", "1",
                     "--duration", "0.5", "--seed", "0", "-o", tmp_path / "out.wav")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.wav").is_file()
    assert len(images) == 1, "the clip-image conditioner was built more than once"
    # One OpenCLIP build for the model's own clip-text conditioner, one for clip-image.
    assert len(towers) == 2, towers
