"""The init audio of a request as a mel of exactly the frames the model will produce.

Shared by ``sdedit`` and ``inpaint``. The request's waveform is already cropped or
zero-padded to the requested length; it is padded with silence up to ``frames * hop`` samples
(the model's granularity) so its mel lines up column for column with the generated mel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mka_core.errors import InputError
from mka_core.tasks import TaskRequest


def init_mel(pipeline, request: TaskRequest) -> torch.Tensor:
    """``[B, 1, n_mels, request.frames]`` float32 log-mel of the request's init audio."""
    if request.init_audio is None:
        raise InputError("This task needs an init audio (--init FILE).")
    wave = request.init_audio.float()
    target = request.frames * pipeline.hop_length
    if wave.shape[-1] < target:
        wave = F.pad(wave, (0, target - wave.shape[-1]))
    mel = pipeline.mel(wave[..., :target])
    frames = mel.shape[-1]
    if frames > request.frames:
        mel = mel[..., : request.frames]
    elif frames < request.frames:  # a front end that drops a last partial frame: repeat the edge column
        mel = F.pad(mel, (0, request.frames - frames), mode="replicate")
    return mel
