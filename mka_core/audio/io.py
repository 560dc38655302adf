"""Reading and writing audio files.

torchaudio 2.9+ has no file I/O of its own (it needs torchcodec and a system FFmpeg), so mka
reads and writes with soundfile, whose wheel bundles libsndfile: wav of any bit depth, flac,
ogg/vorbis/opus and mp3. torchaudio is used only for resampling. Every reader returns mono
float32 at the requested rate; every writer is atomic.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from mka_core.atomic import atomic_write
from mka_core.errors import AudioFileError, InputError

#: Extensions save_audio writes, with their libsndfile container.
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
#: Largest sinc kernel (in floats) torchaudio may build; beyond it an FFT resampler is used.
_MAX_SINC_KERNEL = 20_000_000


def resample(waveform: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited resampling along the last axis to ``ceil(N * target / orig)`` samples.

    Kaiser-windowed sinc with a 64-zero-crossing kernel (the "best" quality setting of the
    usual audio resamplers). torchaudio builds one kernel per output phase, which explodes
    for co-prime rates (44101 -> 16000 would need ~3 GB), so those use an FFT resampler
    (ideal low-pass; the signal is treated as periodic, which only touches the first and
    last few milliseconds).
    """
    orig_rate, target_rate = int(orig_rate), int(target_rate)
    if orig_rate <= 0 or target_rate <= 0:
        raise InputError(f"Sample rates must be positive, got {orig_rate} -> {target_rate}.")
    if orig_rate == target_rate:
        return waveform
    g = math.gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    width = math.ceil(64 * down / (min(up, down) * 0.9475937167399596))
    if up * (down + 2 * width) > _MAX_SINC_KERNEL:
        return _fft_resample(waveform, orig_rate, target_rate)
    import torchaudio

    return torchaudio.functional.resample(
        waveform, down, up, lowpass_filter_width=64, rolloff=0.9475937167399596,
        resampling_method="sinc_interp_kaiser", beta=14.769656459379492,
    )


def _fft_resample(waveform: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Ideal band-limited resampling by zero-padding / truncating the spectrum.

    The input is zero-padded to a whole number of ``orig / gcd`` samples (at least 1024 more),
    so the output grid lands exactly on multiples of ``1 / target_rate`` and the signal does
    not wrap around onto its own start.
    """
    g = math.gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    n = waveform.shape[-1]
    padded = -(-(n + 1024) // down) * down
    out_padded = padded // down * up
    spectrum = torch.fft.rfft(waveform.double(), n=padded, dim=-1)
    keep = min(spectrum.shape[-1], out_padded // 2 + 1)
    resized = torch.zeros(*spectrum.shape[:-1], out_padded // 2 + 1, dtype=spectrum.dtype, device=spectrum.device)
    resized[..., :keep] = spectrum[..., :keep]
    wave = torch.fft.irfft(resized, n=out_padded, dim=-1) * (out_padded / padded)
    return wave[..., : math.ceil(n * up / down)].to(waveform.dtype)


def load_audio(path: str | Path, sample_rate: int = 16000, *, max_seconds: float | None = None) -> torch.Tensor:
    """Read ``path`` as a 1-D float32 mono tensor at ``sample_rate`` (channels averaged).

    ``max_seconds``: keep only the first ``max_seconds`` of the file (only that part is
    decoded, so a long file costs no memory); None reads it all.
    Every problem (missing file, folder, unreadable format, empty audio, NaN/Inf samples) is an
    :class:`~mka_core.errors.AudioFileError` (an :class:`InputError`) with one sentence and a reason.
    """
    import soundfile as sf

    path = Path(path).expanduser()
    if not path.exists():
        raise AudioFileError(f"Audio file {path} does not exist.", "missing")
    if path.is_dir():
        raise AudioFileError(f"{path} is a folder, not an audio file; give the path of a file inside it.", "folder")
    if not os.access(path, os.R_OK):
        raise AudioFileError(f"Audio file {path} cannot be read (permission denied).", "permission")
    if max_seconds is not None and not max_seconds > 0:
        raise InputError(f"max_seconds must be positive, got {max_seconds}.")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(
            f"Cannot read {path} as audio ({_short(exc)}); use wav, flac, ogg or mp3, or convert it with ffmpeg.",
            "unreadable",
        ) from exc
    if info.frames == 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioFileError(f"Audio file {path} is empty (0 samples).", "empty")
    frames = -1 if max_seconds is None else max(1, int(math.ceil(max_seconds * info.samplerate)))
    try:
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(f"Cannot decode {path} ({_short(exc)}); the file may be truncated or corrupt.",
                             "corrupt") from exc
    if data.shape[0] == 0:
        raise AudioFileError(f"Audio file {path} is empty (0 samples).", "empty")
    if not np.isfinite(data).all():
        raise AudioFileError(f"Audio file {path} contains NaN or infinite samples; re-export it from its source.",
                             "non-finite")
    # float64 accumulation: the mean of many channels loses nothing to rounding.
    mono = torch.from_numpy(data.mean(axis=1, dtype=np.float64))
    wave = resample(mono, int(rate), int(sample_rate)).float().contiguous()
    if max_seconds is not None:
        wave = wave[: int(math.ceil(max_seconds * sample_rate))]
    return wave


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int = 16000,
               subtype: str | None = "PCM_16") -> Path:
    """Write mono audio atomically; the container comes from the extension (.wav, .flac, .ogg).

    Samples are clipped to [-1, 1] (NaN becomes 0). ``subtype`` is the libsndfile encoding
    (PCM_16, PCM_24, FLOAT, ...); .ogg is always Vorbis.
    """
    import soundfile as sf

    path = Path(path).expanduser()
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"Cannot write '{path.suffix or path.name}' files; use one of {', '.join(WRITE_FORMATS)}.")
    data = wav.detach().float().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, dtype=np.float32)
    data = np.squeeze(data)
    if data.ndim != 1 or data.size == 0:
        raise InputError(f"save_audio writes one non-empty mono waveform, got shape {tuple(np.shape(wav))}.")
    data = np.clip(np.nan_to_num(data.astype(np.float32), nan=0.0), -1.0, 1.0)
    if fmt == "OGG":
        subtype = "VORBIS"
    if subtype is not None and not sf.check_format(fmt, subtype):
        raise InputError(f"{path.suffix} files cannot hold {subtype} samples; use PCM_16 or PCM_24.")
    if int(sample_rate) <= 0:
        raise InputError(f"The sample rate must be positive, got {sample_rate}.")
    with atomic_write(path, "wb") as handle:
        sf.write(handle, data, int(sample_rate), format=fmt, subtype=subtype)
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if "does not exist" in text or "System error" in text:
        # libsndfile says this about files it cannot identify; the file exists (checked before).
        return "format not recognised"
    return text[:160].rstrip(". ")
