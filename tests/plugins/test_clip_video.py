"""clip-video: which frames are picked, how they are pooled, and how bad files fail.

Test clips are written with PyAV; frame k is a solid grey of level 8 k, so the decoded
frames say which indices were read (round(mean / 8) = k survives the codec).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mka_core.errors import InputError
from mka_plugins.conditioners.clip import ClipImageConditioner, ClipTextConditioner
from mka_plugins.conditioners.clip_video import (
    ClipVideoConditioner,
    ClipVideoOptions,
    pick_frame_indices,
    read_frames,
    register_conditioners,
)

av = pytest.importorskip("av")
decord = pytest.importorskip("decord")
open_clip = pytest.importorskip("open_clip")

HEIGHT, WIDTH = 48, 64


def write_video(path: Path, num_frames: int, *, codec: str = "libx264", noise: bool = False) -> Path:
    """Frame k is grey level 8 k (or random noise, to give a codec real data to store)."""
    rng = np.random.default_rng(0)
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=10)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    for k in range(num_frames):
        pixels = (rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) if noise
                  else np.full((HEIGHT, WIDTH, 3), 8 * k, dtype=np.uint8))
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_audio_only(path: Path) -> Path:
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("aac", rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
    frame.sample_rate = 16000
    for packet in list(stream.encode(frame)) + list(stream.encode()):
        container.mux(packet)
    container.close()
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()) / 8)) for f in frames]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {n: write_video(folder / f"clip{n}.mp4", n) for n in (1, 3, 30)}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    ClipTextConditioner.build_random("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def video_cond(tiny_dir) -> ClipVideoConditioner:
    return ClipVideoConditioner.from_pretrained(tiny_dir)


# -- frame picking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_frames", "count", "expected"),
    [
        (30, 1, [15]),
        (30, 4, [3, 11, 18, 26]),
        (30, 7, [2, 6, 10, 15, 19, 23, 27]),
        (3, 1, [1]),
        (3, 4, [0, 1, 1, 2]),
        (3, 7, [0, 0, 1, 1, 1, 2, 2]),
        (1, 4, [0, 0, 0, 0]),
        (1, 7, [0] * 7),
    ],
)
def test_pick_frame_indices_formula(num_frames, count, expected):
    assert pick_frame_indices(num_frames, count) == expected


@given(st.integers(1, 5000), st.integers(1, 64))
def test_each_index_is_inside_its_segment(num_frames, count):
    indices = pick_frame_indices(num_frames, count)
    assert len(indices) == count and indices == sorted(indices)
    for i, index in enumerate(indices):
        assert 0 <= index < num_frames
        # frame index_i holds the centre of segment i = [i L / N, (i + 1) L / N) ...
        assert 2 * count * index <= (2 * i + 1) * num_frames < 2 * count * (index + 1)
        # ... so it overlaps that segment
        assert i * num_frames < (index + 1) * count and index * count < (i + 1) * num_frames
    if num_frames >= count:
        assert len(set(indices)) == count


def test_pick_frame_indices_rejects_empty_requests():
    with pytest.raises(InputError, match="0 frames"):
        pick_frame_indices(0, 4)
    with pytest.raises(InputError, match="at least 1"):
        pick_frame_indices(10, 0)


@pytest.mark.parametrize("num_frames", [1, 3, 30])
@pytest.mark.parametrize("count", [1, 4, 7])
def test_read_frames_decodes_exactly_the_picked_frames(clips, num_frames, count):
    frames, indices = read_frames(clips[num_frames], count)
    assert indices == pick_frame_indices(num_frames, count)
    assert frames.dtype == np.uint8 and frames.shape == (count, HEIGHT, WIDTH, 3)
    assert frame_numbers(frames) == indices


def test_test_clips_really_encode_their_frame_index(clips):
    reader = decord.VideoReader(str(clips[30]))
    assert frame_numbers(reader.get_batch(list(range(30))).asnumpy()) == list(range(30))


def test_decord_bridge_is_left_as_the_caller_set_it(clips):
    read_frames(clips[3], 2)
    assert isinstance(decord.VideoReader(str(clips[3])).get_batch([0]), decord.nd.NDArray)
    with decord.bridge.use_torch():
        frames, _ = read_frames(clips[3], 2)
        assert isinstance(frames, np.ndarray)
        assert isinstance(decord.VideoReader(str(clips[3])).get_batch([0]), torch.Tensor)


# -- the conditioner -----------------------------------------------------------------------------------


def test_plugin_module_registers_clip_video():
    registered = []
    register_conditioners(registered.append)
    assert registered == [ClipVideoConditioner]
    assert ClipVideoConditioner.input_kind == "video"


def test_frames_option_is_validated():
    assert ClipVideoOptions().frames == 4
    with pytest.raises(Exception):
        ClipVideoOptions(frames=0)
    with pytest.raises(Exception):
        ClipVideoOptions(frame=4)


def test_prepare_gives_cpu_pixels_per_frame(video_cond, clips):
    pixels = video_cond.prepare([clips[30], clips[3]])
    assert pixels.shape == (2, 4, 3, 32, 32) and pixels.dtype == torch.float32 and pixels.device.type == "cpu"


def test_embedding_is_normalised_mean_of_normalised_frame_embeddings(video_cond, clips, tiny_dir):
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_dir}")
    model.eval()
    for n in (30, 3):
        frames, _ = read_frames(clips[n], 4)
        with torch.no_grad():
            per_frame = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames]))
        expected = F.normalize(F.normalize(per_frame, dim=-1).mean(dim=0), dim=-1)
        cond = video_cond([clips[n]])
        assert cond.embeds.shape == (1, 1, 32) and cond.mask.tolist() == [[True]]
        torch.testing.assert_close(cond.embeds[0, 0], expected, atol=1e-6, rtol=0)


def test_one_frame_video_equals_that_frame_as_an_image(video_cond, clips, tiny_dir):
    frame = read_frames(clips[1], 1)[0][0]
    image_cond = ClipImageConditioner.from_pretrained(tiny_dir)
    torch.testing.assert_close(video_cond([clips[1]]).embeds, image_cond([frame]).embeds, atol=1e-6, rtol=0)


def test_batch_equals_singles(video_cond, clips):
    paths = [clips[30], clips[1], clips[3]]
    batch = video_cond(paths).embeds
    torch.testing.assert_close(batch, torch.cat([video_cond([p]).embeds for p in paths]), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(3, 1), atol=1e-5, rtol=0)


def test_decoded_frames_are_accepted(video_cond, clips):
    reader = decord.VideoReader(str(clips[30]))
    all_frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    torch.testing.assert_close(video_cond([all_frames]).embeds, video_cond([clips[30]]).embeds, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="no frames"):
        video_cond([all_frames[:0]])


def test_frames_option_changes_the_pooling(tiny_dir, clips, video_cond):
    seven = ClipVideoConditioner.from_pretrained(tiny_dir, frames=7)
    assert seven.prepare([clips[30]]).shape[1] == 7
    assert (seven([clips[30]]).embeds - video_cond([clips[30]]).embeds).abs().max() > 0


def test_save_and_reload_keeps_options_and_outputs(video_cond, clips, tmp_path, tiny_dir):
    seven = ClipVideoConditioner.from_pretrained(tiny_dir, frames=7)
    seven.save_pretrained(tmp_path / "video")
    again = ClipVideoConditioner.from_pretrained(tmp_path / "video")
    assert again.options.frames == 7 and again.space == seven.space
    torch.testing.assert_close(again([clips[30]]).embeds, seven([clips[30]]).embeds, atol=0, rtol=0)
    torch.testing.assert_close(again.null_condition(2).embeds, video_cond.null_condition(2).embeds, atol=0, rtol=0)
    text = ClipTextConditioner.from_pretrained(tmp_path / "video")  # frames is dropped, space shared
    assert text.space == again.space


# -- failures --------------------------------------------------------------------------------------------


def test_missing_file_and_folder(video_cond, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        video_cond([tmp_path / "missing.mp4"])
    with pytest.raises(InputError, match="not a file"):
        video_cond([tmp_path])


def test_audio_only_file_has_no_video_stream(video_cond, tmp_path):
    with pytest.raises(InputError, match="no decodable video stream"):
        video_cond([write_audio_only(tmp_path / "sound.m4a")])


@pytest.mark.parametrize("content", ["random", "empty", "truncated", "text"])
def test_unreadable_files(video_cond, clips, tmp_path, content):
    path = tmp_path / "broken.mp4"
    data = clips[30].read_bytes()
    payload = {
        "random": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "text": b"this is not a video\n",
    }[content]
    path.write_bytes(payload)
    with pytest.raises(InputError, match="not a readable video file"):
        video_cond([path])


def test_corrupt_frame_data_fails_at_decode(video_cond, tmp_path):
    path = write_video(tmp_path / "noise.mp4", 30, codec="mpeg4", noise=True)
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 24, data.find(b"moov") - 16
    assert 0 < start < end  # the frame data sits between the headers
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert len(decord.VideoReader(str(path))) == 30  # the header still reads
    with pytest.raises(InputError, match="video data is corrupt"):
        video_cond([path])


@pytest.mark.parametrize("bad", [np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 8, 3), np.float32), 5])
def test_wrong_input_types(video_cond, bad):
    with pytest.raises(InputError):
        video_cond([bad])
