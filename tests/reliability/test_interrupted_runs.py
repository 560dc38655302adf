"""Ctrl-C and SIGTERM sent to real `mka generate` / `mka convert` processes leave no partial file.

Each run is a real CLI process (see interrupt_harness.py) signalled while it is inside a chosen
function: sampling, encoding the audio of an output, rendering the sidecar of the second of
two outputs, reading a checkpoint, saving a converted model. The runs of a test go side by
side; every wait has a deadline and every process still running when a test ends is killed.
"""

from __future__ import annotations

import json
import signal

import soundfile as sf

FAST = ("--duration", "0.3", "--steps", "2", "--seed", "0")
INTERRUPTED = "mka: interrupted; nothing half-written was left behind."


def assert_interrupted(run) -> None:
    code, _, err = run.finish()
    assert code == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == INTERRUPTED, err


def hidden_or_temporary(folder):
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_interrupted_generate_leaves_no_partial_file(cli, tiny_model_dir, tmp_path):
    sampling, audio, sidecar = (tmp_path / name for name in ("sampling", "audio", "sidecar"))
    for folder in (sampling, audio, sidecar):
        folder.mkdir()
    previous = audio / "x.wav"
    sf.write(previous, [0.5] * 100, 16000)
    before = previous.read_bytes()
    model = ("generate", "--model", tiny_model_dir, "rain", *FAST)
    runs = [
        # Ctrl-C while the sampler runs: nothing has been written yet, nothing may appear.
        (signal.SIGINT, cli(*model, "-o", f"{sampling}/", pause_at="mka_core.pipeline:Pipeline.sample")),
        # SIGTERM while the audio is encoded to replace an existing file: the old file stays as it was.
        (signal.SIGTERM, cli(*model, "-o", previous, pause_at="mka_core.outputs.writer:encode_audio")),
        # SIGTERM while the second output's sidecar is made: the first output is complete and
        # stays; nothing of the second remains.
        (signal.SIGTERM, cli(*model, "--n", "2", "-o", f"{sidecar}/", pause_at="mka_core.outputs.writer:sidecar_json",
                             call=2)),
    ]
    for sig, run in runs:
        run.wait_until_paused()
        run.send(sig)
    for _, run in runs:
        assert_interrupted(run)

    assert list(sampling.iterdir()) == []
    assert sorted(p.name for p in audio.iterdir()) == ["x.wav"] and previous.read_bytes() == before
    assert sorted(p.name for p in sidecar.iterdir()) == ["rain_0.wav", "rain_0.wav.json"]
    assert sf.info(str(sidecar / "rain_0.wav")).frames == 4800
    assert json.loads((sidecar / "rain_0.wav.json").read_text())["seed"] == 0
    for folder in (sampling, audio, sidecar):
        assert hidden_or_temporary(folder) == []


def test_interrupted_convert_leaves_no_folder(tmp_path, cli):
    """Interrupted while reading the checkpoint, and while saving the converted model; a third,
    uninterrupted run shows the harness's tiny conversion really writes a model folder."""
    ckpt = tmp_path / "inpaint7.ckpt"
    ckpt.write_bytes(b"PK\x03\x04" + bytes(64))  # never decoded: the run is stopped when the read starts
    convert = ("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--out")
    reading = cli(*convert, tmp_path / "read-out", pause_at="mka_core.convert.checkpoint:safe_torch_load")
    writing = cli(*convert, tmp_path / "write-out", pause_at="mka_core.pipeline_io:save_module", call=2,
                  tiny_conversion=True)
    complete = cli(*convert, tmp_path / "model", "--quiet", tiny_conversion=True)
    for sig, run in ((signal.SIGINT, reading), (signal.SIGTERM, writing)):
        run.wait_until_paused()
        run.send(sig)
    for run in (reading, writing):
        assert_interrupted(run)
    code, _, err = complete.finish()
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inpaint7.ckpt", "model"]
    assert (tmp_path / "model" / "model_index.json").is_file() and (tmp_path / "model" / "unet").is_dir()
    assert hidden_or_temporary(tmp_path) == []


def test_interrupted_while_the_sidecar_is_made_keeps_the_replaced_file(cli, tiny_model_dir, tmp_path):
    """`-o existing.wav`: SIGTERM while the new sidecar is made leaves the previous output and its
    sidecar exactly as they were (the new audio is only published together with its sidecar)."""
    first = cli("generate", "--model", tiny_model_dir, "rain", *FAST, "-o", tmp_path / "existing.wav")
    assert first.finish()[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["existing.wav", "existing.wav.json"]
    again = cli("generate", "--model", tiny_model_dir, "thunder", "--duration", "0.5", "--steps", "2", "--seed", "3",
                "-o", tmp_path / "existing.wav", pause_at="mka_core.outputs.writer:sidecar_json")
    again.wait_until_paused()
    again.send(signal.SIGTERM)
    assert_interrupted(again)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_kill_9_leaves_no_placeholder_that_blocks_the_next_run(cli, tiny_model_dir, tmp_path):
    """SIGKILL cannot be cleaned up after; it may leave a hidden temporary file, but never a visible
    (empty or partial) file under an output's name: the next run gets that name, and a file named
    with -o keeps its previous content."""
    folder, named = tmp_path / "folder", tmp_path / "named"
    named.mkdir()
    previous = named / "x.wav"
    sf.write(previous, [0.25] * 800, 16000)
    before = previous.read_bytes()
    model = ("generate", "--model", tiny_model_dir, "rain", *FAST)
    runs = [cli(*model, "-o", f"{folder}/", pause_at="mka_core.outputs.writer:sidecar_json"),
            cli(*model, "-o", previous, pause_at="mka_core.outputs.writer:sidecar_json")]
    for run in runs:
        run.wait_until_paused()
        run.send(signal.SIGKILL)
    for run in runs:
        assert run.finish()[0] == -signal.SIGKILL
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []
    assert visible == []
    assert sorted(p.name for p in named.iterdir() if not p.name.startswith(".")) == ["x.wav"]
    assert previous.read_bytes() == before

    code, _, err = cli(*model, "-o", f"{folder}/").finish()
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["rain_0.wav", "rain_0.wav.json"]
    assert sf.info(str(folder / "rain_0.wav")).frames == 4800


def test_every_file_of_an_output_is_published_with_it(cli, tiny_model_dir, tmp_path):
    """Audio, sidecar and spectrogram appear together, in a folder and at a file named with -o (FLAC
    here), replacing an older output there; no temporary file is left."""
    folder, named = tmp_path / "folder", tmp_path / "named.flac"
    for _ in range(2):  # the second round takes the next free name in the folder, and replaces named.flac
        runs = [cli("generate", "--model", tiny_model_dir, "rain", *FAST, "--spectrogram", "-o", out)
                for out in (f"{folder}/", named)]
        for run in runs:
            code, _, err = run.finish()
            assert code == 0, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([
        "folder", "rain_0.wav", "rain_0.wav.json", "rain_0.wav.png", "rain_0-2.wav", "rain_0-2.wav.json",
        "rain_0-2.wav.png", "named.flac", "named.flac.json", "named.flac.png"])
    for wav in ("rain_0.wav", "rain_0-2.wav"):
        assert json.loads((folder / f"{wav}.json").read_text())["file"] == wav
        assert (folder / f"{wav}.png").read_bytes().startswith(b"\x89PNG")
    assert sf.info(str(named)).format == "FLAC" and sf.info(str(named)).frames == 4800
    assert json.loads((tmp_path / "named.flac.json").read_text())["file"] == "named.flac"
