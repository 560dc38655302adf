"""Every built-in conditioner drives a tiny model from the CLI, and spaces are enforced."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.conftest import assert_clean_error, run_cli


def write_video(path, frames: int = 12):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(frames):
            image = np.full((48, 64, 3), (k * 20) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "photo.png")
    write_video(folder / "clip.mp4")
    return folder


TEXT = ["bert", "t5", "clap-text", "clip-text"]


@pytest.mark.parametrize("cond,kind", [(c, "text") for c in TEXT] + [("clip-image", "image"), ("clip-video", "video")])
def test_new_model_then_generate(cond, kind, inputs, tmp_path):
    from mka_core.plugins import manager

    if cond not in manager.names("conditioner"):
        pytest.fail(f"built-in conditioner {cond} is not registered")
    model = tmp_path / "model"
    made = run_cli("new-model", "--preset", "tiny", "--cond", cond, "--out", model)
    assert made.returncode == 0, made.stderr
    item = {"text": "a bell ringing", "image": inputs / "photo.png", "video": inputs / "clip.mp4"}[kind]
    out = tmp_path / "out.wav"
    gen = run_cli("generate", "--model", model, "--cond", cond, item, "--duration", "1", "--steps", "2", "-o", out)
    assert gen.returncode == 0, gen.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (16000,)


@pytest.fixture(scope="module")
def clip_text_model(tmp_path_factory):
    model = tmp_path_factory.mktemp("clipmodel") / "m"
    made = run_cli("new-model", "--preset", "tiny", "--cond", "clip-text", "--out", model)
    assert made.returncode == 0, made.stderr
    return model


def test_a_clip_text_model_runs_on_images_and_videos(clip_text_model, inputs, tmp_path):
    for cond, item in [("clip-image", inputs / "photo.png"), ("clip-video", inputs / "clip.mp4"), ("clip-text", "waves")]:
        out = tmp_path / f"{cond}.wav"
        gen = run_cli("generate", "--model", clip_text_model, "--cond", cond, item, "--duration", "0.5", "--steps", "2", "-o", out)
        assert gen.returncode == 0, (cond, gen.stderr)


def test_a_model_refuses_a_conditioner_from_another_space(tiny_model_dir, inputs, tmp_path):
    result = run_cli("generate", "--model", tiny_model_dir, "--cond", "clip-image", inputs / "photo.png",
                     "--duration", "0.5", "--steps", "2", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "embedding space", "bert:", "openclip", "Conditioners that fit: bert")
    assert not (tmp_path / "x.wav").exists()


def test_clip_video_reads_streams_decord_cannot(tmp_path):
    """decord 0.6 fails on MPEG-4 part 2 at a 48-pixel width; the PyAV fallback reads it."""
    av = pytest.importorskip("av")
    from mka_plugins.conditioners.clip_video import read_frames

    path = tmp_path / "m4.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for k in range(12):
            image = np.full((32, 48, 3), 20 * k, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames, indices = read_frames(path, 4)
    assert indices == [1, 4, 7, 10] and frames.shape == (4, 32, 48, 3)
    assert np.allclose(frames.reshape(4, -1).mean(axis=1), [20 * i for i in indices], atol=6)
