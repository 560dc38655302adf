"""Reading and writing audio files.

torchaudio 2.9+ has no file I/O of its own, so mka reads and writes with soundfile
(libsndfile: wav of any bit depth, flac, ogg/vorbis/opus, mp3 where the bundled libsndfile
supports it) and uses torchaudio only for resampling. Every reader returns mono float32 at
the requested rate; every writer is atomic.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mka_core.atomic import atomic_write
from mka_core.errors import InputError

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
#: Longest file read by default (an hour): guards memory against a mistaken input.
DEFAULT_MAX_SECONDS = 3600.0


def resample(waveform: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited resampling (Kaiser-windowed sinc) along the last axis."""
    if orig_rate == target_rate:
        return waveform
    import torchaudio

    g = math.gcd(int(orig_rate), int(target_rate))
    return torchaudio.functional.resample(
        waveform, orig_rate // g, target_rate // g, lowpass_filter_width=64, rolloff=0.9475937167399596,
        resampling_method="sinc_interp_kaiser", beta=14.769656459379492,
    )


def load_audio(path: str | Path, sample_rate: int = 16000, *, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> torch.Tensor:
    """Read ``path`` as a 1-D float32 mono tensor at ``sample_rate`` (channels averaged)."""
    import soundfile as sf

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"Audio file {path} does not exist.")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an audio file.")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InputError(
            f"Cannot read {path} as audio ({_short(exc)}); use wav, flac, ogg or mp3, or convert it with ffmpeg."
        ) from exc
    if info.frames == 0 or info.samplerate <= 0:
        raise InputError(f"Audio file {path} is empty (0 samples).")
    if max_seconds is not None and info.frames / info.samplerate > max_seconds:
        raise InputError(
            f"Audio file {path} is {info.frames / info.samplerate:.0f} s long, more than the {max_seconds:.0f} s limit; cut it first."
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"Cannot decode {path} ({_short(exc)}); the file may be truncated or corrupt.") from exc
    if data.shape[0] == 0:
        raise InputError(f"Audio file {path} is empty (0 samples).")
    if not np.isfinite(data).all():
        raise InputError(f"Audio file {path} contains NaN or infinite samples; it cannot be used.")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    return resample(mono, int(rate), int(sample_rate)).float().contiguous()


def save_audio(path: str | Path, waveform: torch.Tensor | np.ndarray, sample_rate: int = 16000, subtype: str | None = "PCM_16") -> Path:
    """Write mono audio atomically; the format comes from the extension (.wav, .flac, .ogg)."""
    import soundfile as sf

    path = Path(path).expanduser()
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"Cannot write '{path.suffix or path.name}' files; use one of {', '.join(WRITE_FORMATS)}.")
    data = waveform.detach().float().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, dtype=np.float32)
    data = np.clip(np.nan_to_num(data.reshape(-1), nan=0.0), -1.0, 1.0)
    if fmt == "OGG":
        subtype = "VORBIS"
    with atomic_write(path, "wb") as handle:
        sf.write(handle, data, int(sample_rate), format=fmt, subtype=subtype)
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:160]
