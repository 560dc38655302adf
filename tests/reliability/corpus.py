"""The bad-input corpus: small files that break in the ways real files break.

Every builder writes one file into a folder the test owns and returns its path. Nothing is
downloaded or shipped: the files are made from numpy arrays with soundfile, Pillow and PyAV.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

# -- audio --------------------------------------------------------------------------------


def tone(seconds: float, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A quiet sine, ``[samples, channels]`` float32 (each channel a little detuned)."""
    t = np.arange(int(round(seconds * rate))) / rate
    columns = [0.3 * np.sin(2 * np.pi * (freq + 7 * c) * t) for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def write_wav(path: Path, data: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), data, rate, subtype=subtype, format="WAV")
    return path


def truncated_wav(path: Path) -> Path:
    """A wav cut in the middle of its header (the first 30 of its 44 header bytes)."""
    full = write_wav(path.with_name("full-" + path.name), tone(0.5))
    path.write_bytes(full.read_bytes()[:30])
    return path


def header_corrupted_wav(path: Path) -> Path:
    """A wav whose RIFF/WAVE magic and format chunk are overwritten with garbage."""
    data = bytearray(write_wav(path, tone(0.5)).read_bytes())
    data[0:16] = b"\x13\x37garbage-bytes!"
    path.write_bytes(bytes(data))
    return path


def lying_header_wav(path: Path) -> Path:
    """A valid header that promises far more sample data than the file holds (a cut download)."""
    data = bytearray(write_wav(path, tone(1.0)).read_bytes())
    data = data[: 44 + 200]  # keep 100 of 16000 samples
    path.write_bytes(bytes(data))
    return path


def zero_length_wav(path: Path) -> Path:
    """A well-formed wav with no samples at all."""
    return write_wav(path, np.zeros((0, 1), np.float32))


def one_sample_wav(path: Path) -> Path:
    return write_wav(path, np.array([[0.25]], np.float32))


def nonfinite_wav(path: Path, value: float) -> Path:
    """A float wav with one NaN or Inf sample among ordinary ones."""
    data = tone(0.5)
    data[100, 0] = value
    return write_wav(path, data, subtype="FLOAT")


def many_channels_high_rate_wav(path: Path) -> Path:
    """8 channels at 192 kHz, 0.3 s (a studio export)."""
    return write_wav(path, tone(0.3, rate=192_000, channels=8), rate=192_000, subtype="PCM_24")


def silence_wav(path: Path, seconds: float = 0.5) -> Path:
    return write_wav(path, np.zeros((int(seconds * 16000), 1), np.float32))


# -- video ---------------------------------------------------------------------------------


def write_video(path: Path, num_frames: int, width: int = 64, height: int = 48) -> Path:
    """An H.264 mp4 whose frame k is grey level 16 k."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(num_frames):
            pixels = np.full((height, width, 3), (16 * k) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def audio_only_mp4(path: Path) -> Path:
    """An mp4 container holding one AAC stream and no video stream."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    return path


def corrupt_mp4(path: Path) -> Path:
    """An mp4 whose first half is kept and whose box headers are then overwritten with noise."""
    good = write_video(path.with_name("good-" + path.name), 20)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(1)
    data[8 : len(data) // 2] = rng.integers(0, 256, len(data) // 2 - 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data[: int(len(data) * 0.75)]))
    return path


# -- images ---------------------------------------------------------------------------------


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels but holds no pixel data.

    Built by hand: Pillow will not write a 0 x 0 image, and a header is all a decompression-bomb
    check may look at.
    """
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def zero_size_png(path: Path) -> Path:
    return png_claiming(path, 0, 0)


def large_png(path: Path, megapixels: float = 50.0) -> Path:
    """A plain two-colour PNG of about ``megapixels`` MP (compresses to a few hundred kB)."""
    from PIL import Image

    side = int(round((megapixels * 1e6) ** 0.5))
    image = Image.new("RGB", (side, side), (30, 90, 200))
    image.paste((250, 200, 20), (0, 0, side // 2, side))
    image.save(path, compress_level=1)
    return path


def truncated_png(path: Path) -> Path:
    """The first 60 bytes of a real PNG: its header, then nothing."""
    data = small_png(path.with_name("whole-" + path.name)).read_bytes()
    path.write_bytes(data[:60])
    return path


def small_png(path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    return path


# -- text -------------------------------------------------------------------------------------


def non_utf8_prompts(path: Path) -> Path:
    """Latin-1 bytes: line 1 is ASCII, line 2 holds a byte that is not valid UTF-8."""
    path.write_bytes("a bell ringing\nun caf\xe9 bruyant\n".encode("latin-1"))
    return path


def long_text(length: int = 100_000) -> str:
    words = "rain falls on a tin roof while thunder rolls far away "
    return (words * (length // len(words) + 1))[:length]
