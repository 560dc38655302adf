"""Ctrl-C and SIGTERM sent to real `mka generate` / `mka convert` processes leave no partial file.

Each child runs the real CLI (see interrupt_harness.py) and is signalled while it is inside a
chosen function: sampling, encoding the audio of an output, writing the sidecar of the second
of two outputs, reading a checkpoint, saving a converted model. The children run side by side
to keep the file quick.
"""

from __future__ import annotations

import json
import signal

import soundfile as sf

from tests.reliability.conftest import finish, start_cli, wait_until_paused

FAST = ("--duration", "0.3", "--steps", "2", "--seed", "0")


def assert_interrupted(code: int, err: str) -> None:
    assert code == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "mka: interrupted; nothing half-written was left behind.", err


def hidden_or_temporary(folder):
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_interrupted_generate_leaves_no_partial_file(tiny_model_dir, tmp_path):
    sampling, audio, sidecar = (tmp_path / name for name in ("sampling", "audio", "sidecar"))
    for folder in (sampling, audio, sidecar):
        folder.mkdir()
    previous = audio / "x.wav"
    sf.write(previous, [0.5] * 100, 16000)
    before = previous.read_bytes()
    children = [
        # Ctrl-C while the sampler runs: nothing has been written yet, nothing may appear.
        (signal.SIGINT, start_cli("generate", "--model", tiny_model_dir, "rain", *FAST, "-o", f"{sampling}/",
                                  pause_at="mka_core.pipeline:Pipeline.sample")),
        # SIGTERM while the audio is written over an existing file: the old file stays as it was.
        (signal.SIGTERM, start_cli("generate", "--model", tiny_model_dir, "rain", *FAST, "-o", previous,
                                   pause_at="mka_core.cli.generate:encode_audio")),
        # SIGTERM while the second output's sidecar is written: the first output is complete and
        # stays; the second (its audio already written) is removed with its placeholder.
        (signal.SIGTERM, start_cli("generate", "--model", tiny_model_dir, "rain", *FAST, "--n", "2",
                                   "-o", f"{sidecar}/", pause_at="mka_core.cli.sidecar:sidecar_json", call=2)),
    ]
    for sig, child in children:
        wait_until_paused(child)
        child.send_signal(sig)
    for _, child in children:
        assert_interrupted(*finish(child)[::2])

    assert list(sampling.iterdir()) == []
    assert sorted(p.name for p in audio.iterdir()) == ["x.wav"] and previous.read_bytes() == before
    assert sorted(p.name for p in sidecar.iterdir()) == ["rain_0.wav", "rain_0.wav.json"]
    assert sf.info(str(sidecar / "rain_0.wav")).frames == 4800
    assert json.loads((sidecar / "rain_0.wav.json").read_text())["seed"] == 0
    for folder in (sampling, audio, sidecar):
        assert hidden_or_temporary(folder) == []


def test_interrupted_convert_leaves_no_folder(tmp_path):
    """Interrupted while reading the checkpoint, and while saving the converted model."""
    ckpt = tmp_path / "inpaint7.ckpt"
    ckpt.write_bytes(b"PK\x03\x04" + bytes(64))  # never decoded: the run is stopped when the read starts
    reading = start_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--out", tmp_path / "read-out",
                        pause_at="mka_core.convert.checkpoint:safe_torch_load")
    writing = start_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--out", tmp_path / "write-out",
                        pause_at="mka_core.pipeline_io:save_module", call=2, tiny_conversion=True)
    for sig, child in ((signal.SIGINT, reading), (signal.SIGTERM, writing)):
        wait_until_paused(child)
        child.send_signal(sig)
    for child in (reading, writing):
        assert_interrupted(*finish(child)[::2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inpaint7.ckpt"]


def test_an_uninterrupted_tiny_conversion_is_written(tmp_path):
    """The harness's tiny conversion is a real one: without a signal the folder appears, complete."""
    ckpt = tmp_path / "inpaint7.ckpt"
    ckpt.write_bytes(b"PK\x03\x04")
    code, out, err = finish(start_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--out",
                                      tmp_path / "model", "--quiet", tiny_conversion=True))
    assert code == 0, err
    assert (tmp_path / "model" / "model_index.json").is_file() and (tmp_path / "model" / "unet").is_dir()
    assert hidden_or_temporary(tmp_path) == []
