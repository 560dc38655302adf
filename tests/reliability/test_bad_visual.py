"""Bad images and videos through `mka generate --cond clip-image/clip-video` on a tiny CLIP-space model."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import assert_clean_error
from tests.reliability import corpus
from tests.reliability.conftest import generate, leftovers

pytest.importorskip("open_clip")


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def run_cond(model, cond, item, out):
    return generate(model, "--cond", cond, item, "--duration", "0.3", "-o", out / "x.wav")


def assert_one_line_error(result, *fragments):
    """The error is the only thing on stderr: no FFmpeg or decoder log lines around it."""
    assert_clean_error(result, *fragments)
    # mka's own status line while the model loads is allowed; nothing else around the error.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("mka: loading the model")]
    assert len([line for line in lines if line.strip()]) == 1, result.stderr


def assert_audio(out):
    audio, rate = sf.read(out / "x.wav", dtype="float32")
    assert rate == 16000 and audio.shape == (4800,) and np.isfinite(audio).all()


# -- video -------------------------------------------------------------------------------------------------


def test_a_video_without_a_video_stream(tiny_clip_model_dir, tmp_path, out):
    pytest.importorskip("decord")
    result = run_cond(tiny_clip_model_dir, "clip-video", corpus.audio_only_mp4(tmp_path / "sound.mp4"), out)
    assert_one_line_error(result, "sound.mp4", "no decodable video stream")
    assert leftovers(out) == []


def test_a_video_of_one_frame_works(tiny_clip_model_dir, tmp_path, out):
    pytest.importorskip("decord")
    result = run_cond(tiny_clip_model_dir, "clip-video", corpus.write_video(tmp_path / "still.mp4", 1), out)
    assert result.returncode == 0, result.stderr
    assert_audio(out)


@pytest.mark.parametrize("damage", ["corrupt", "empty", "image"])
def test_unreadable_videos(tiny_clip_model_dir, tmp_path, out, damage):
    pytest.importorskip("decord")
    path = tmp_path / "clip.mp4"
    if damage == "corrupt":
        corpus.corrupt_mp4(path)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a PNG with a video's name
        path.write_bytes(corpus.small_png(tmp_path / "photo.png").read_bytes())
    result = run_cond(tiny_clip_model_dir, "clip-video", path, out)
    assert_one_line_error(result, "clip.mp4")
    assert leftovers(out) == []


# -- images ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder,fragments", [
    (corpus.zero_size_png, ["zero.png"]),
    (lambda p: corpus.png_claiming(p, 20_000, 20_000), ["zero.png", "pixels", "downscale"]),
    (corpus.truncated_png, ["zero.png"]),
    (lambda p: corpus.write_video(p, 3), ["zero.png"]),
], ids=["0x0", "bomb-400MP", "truncated", "video-named-png"])
def test_unusable_images_are_one_sentence(tiny_clip_model_dir, tmp_path, out, builder, fragments):
    path = builder(tmp_path / "zero.png")
    result = run_cond(tiny_clip_model_dir, "clip-image", path, out)
    assert_one_line_error(result, *fragments)
    assert leftovers(out) == []


def test_a_50_megapixel_image_works(tiny_clip_model_dir, tmp_path, out):
    """Large but below Pillow's bomb limit: reduced before the CLIP transform, then used."""
    big = corpus.large_png(tmp_path / "panorama.png", megapixels=50)
    result = run_cond(tiny_clip_model_dir, "clip-image", big, out)
    assert result.returncode == 0, result.stderr
    assert_audio(out)
