"""The clip-video conditioner: frames picked uniformly, CLIP image embeddings pooled.

Frame picking: ``count`` frames (option ``frames``, default 4) at the centres of ``count``
equal segments of the clip, ``index_i = floor((2 i + 1) * L / (2 count))`` for ``i = 0..count-1``
(integer arithmetic, so no rounding surprises). A clip with fewer frames than ``count``
simply repeats frames (a 1-frame clip gives ``[0, 0, 0, 0]``).

Pooling: each frame's CLIP image embedding is L2-normalised, the ``count`` embeddings are
averaged and the mean is normalised again: one global token ``[B, 1, D]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from pydantic import Field

from mka_core.conditioning import Condition, InputKind
from mka_core.errors import InputError, PluginError
from mka_core.plugins.hookspecs import hookimpl
from mka_plugins.conditioners._openclip import OpenClipConditioner, OpenClipOptions, l2_normalise


class ClipVideoOptions(OpenClipOptions):
    """Options of clip-video: the OpenCLIP options and the number of frames."""

    frames: int = Field(4, ge=1, le=256, description="Frames picked uniformly from each clip and pooled.")


def pick_frame_indices(num_frames: int, count: int) -> list[int]:
    """Indices of ``count`` frames at the centres of ``count`` equal segments of ``num_frames``.

    ``floor((2 i + 1) * num_frames / (2 count))``; short clips repeat frames.
    """
    if num_frames < 1:
        raise InputError(f"Cannot pick frames from a clip with {num_frames} frames.")
    if count < 1:
        raise InputError(f"The number of frames to pick must be at least 1, not {count}.")
    return [(2 * i + 1) * num_frames // (2 * count) for i in range(count)]


def import_decord() -> Any:
    try:
        import decord
    except ImportError as exc:
        raise PluginError("The clip-video conditioner needs the decord package; install it with pip install 'mka[video]'.") from exc
    # decord's bundled FFmpeg prints its own log lines ("moov atom not found", ...) on stderr;
    # mka turns every failure into one sentence of its own, so those stay quiet unless debugging.
    if os.environ.get("MKA_DEBUG", "0") in ("", "0"):
        decord.logging.set_level(decord.logging.QUIET)
    return decord


def read_frames(path: str | Path, count: int) -> tuple[np.ndarray, list[int]]:
    """Decode the ``count`` uniformly picked frames of a video file.

    Returns ``(frames, indices)``: uint8 ``[count, H, W, 3]`` RGB and the frame indices used.
    Every failure is an :class:`InputError` with one sentence. decord's bridge (thread-local
    state) is left as the caller had it.
    """
    decord = import_decord()
    path = Path(path)
    if not path.exists():
        raise InputError(f"Video file {path} does not exist.")
    if not path.is_file():
        raise InputError(f"{path} is not a file; pass a video file.")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    except decord.DECORDError as exc:
        # decord raises this (not RuntimeError) when the container opens but holds no usable video stream.
        raise InputError(f"{path} has no decodable video stream (it may be audio-only, empty or damaged); pass a video file.") from exc
    except RuntimeError as exc:
        raise InputError(f"{path} is not a readable video file (corrupt, truncated or in an unsupported format).") from exc
    try:
        total = len(reader)
        if total < 1:
            raise InputError(f"{path} has no video frames.")
        indices = pick_frame_indices(total, count)
        try:
            # The torch bridge hands back a plain CPU tensor whatever bridge the caller set;
            # use_torch() is a scope that restores the previous bridge on exit.
            with decord.bridge.use_torch():
                batch = reader.get_batch(indices)
        except (decord.DECORDError, RuntimeError, IndexError) as exc:
            # decord 0.6 fails on some valid streams (e.g. MPEG-4 part 2 at widths that are not a
            # multiple of 64: "The size must exactly match"); PyAV decodes those.
            fallback = _read_frames_with_pyav(path, indices)
            if fallback is None:
                raise InputError(f"Could not decode frames {indices} of {path}: the video data is corrupt.") from exc
            return fallback, indices
    finally:
        del reader
    frames = batch.numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    return np.ascontiguousarray(frames.astype(np.uint8, copy=False)), indices


def _read_frames_with_pyav(path: Path, indices: list[int]) -> np.ndarray | None:
    """The frames at ``indices`` decoded with PyAV, or None when PyAV is missing or fails too."""
    try:
        import av
    except ImportError:
        return None
    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            for k, frame in enumerate(container.decode(video=0)):
                if k in wanted:
                    found[k] = frame.to_ndarray(format="rgb24")
                if k >= max(indices):
                    break
    except Exception:  # any PyAV/FFmpeg failure means the file really is unreadable
        return None
    if not wanted <= set(found):
        return None
    return np.ascontiguousarray(np.stack([found[i] for i in indices]).astype(np.uint8, copy=False))


class ClipVideoConditioner(OpenClipConditioner):
    """Video through the OpenCLIP image tower, ``frames`` frames pooled into ``[B, 1, D]``."""

    name: ClassVar[str] = "clip-video"
    input_kind: ClassVar[InputKind] = "video"
    Options = ClipVideoOptions
    tower = "image"
    extra: ClassVar[str] = "video"
    summary: ClassVar[str] = "4 uniformly picked frames through the OpenCLIP image tower, normalised, averaged, normalised."

    def frames_of(self, item: Any) -> np.ndarray:
        """A video file path, or decoded frames ``uint8 [T, H, W, 3]`` -> the picked ``[frames, H, W, 3]``."""
        count = self.options.frames
        if isinstance(item, (str, Path)):
            return read_frames(item, count)[0]
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 4 or item.shape[-1] != 3:
                raise InputError(f"A decoded video must be a uint8 array [T, H, W, 3], not {item.dtype} {list(item.shape)}.")
            if item.shape[0] == 0:
                raise InputError("The decoded video has no frames.")
            return item[pick_frame_indices(item.shape[0], count)]
        raise InputError(f"clip-video takes video file paths or uint8 frame arrays [T, H, W, 3], not {type(item).__name__}.")

    def prepare(self, inputs: Sequence[Any]) -> torch.Tensor:
        """Videos -> ``[B, frames, 3, S, S]`` float32 pixels (decode, pick, open_clip transform)."""
        items = list(inputs)
        if not items:
            raise InputError("clip-video got no videos to encode; pass at least one video.")
        return torch.stack([torch.stack([self.transform(frame) for frame in self.frames_of(item)]) for item in items])

    def encode(self, prepared: torch.Tensor) -> Condition:
        batch, count = prepared.shape[:2]
        per_frame = l2_normalise(self.encode_pixels(prepared.flatten(0, 1)))
        pooled = per_frame.view(batch, count, -1).mean(dim=1)
        return self.global_condition(pooled)


@hookimpl
def register_conditioners(register):
    register(ClipVideoConditioner)
