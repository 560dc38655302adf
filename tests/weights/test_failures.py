"""Pulls that end badly in a real process (killed, disk full), family A's manual step and --from, the listing."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

from tests.conftest import assert_clean_error, run_cli
from tests.weights.conftest import blobs, home_files

CKPT = "useful_ckpts/ta40multi_epoch=000085.ckpt"
SPACE = ("space", "DiffusionSpeech/Make_An_Audio")


def start_pull(*args: str, preexec=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mka_core.cli.main", "weights", "pull", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=preexec)


def test_a_pull_killed_half_way_leaves_nothing_partial_and_is_resumed(hub, tmp_path):
    half = len(hub.repos[SPACE][CKPT]) // 2
    hub.stall_after[CKPT] = half
    process = start_pull("ta40multi", "--allow-network")
    try:
        assert hub.stalled.wait(240), process.communicate(timeout=5)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        hub.released.set()
    # The entries completed before the checkpoint are in place; nothing of ta40multi is.
    assert not (tmp_path / "home" / "models").exists() or not list((tmp_path / "home" / "models").iterdir())
    assert not [p for p in home_files(tmp_path) if ".partial-" in p or p.endswith((".incomplete", ".tmp"))]
    fetched_before = {p: len(hub.gets(p)) for p in ("vocoder/logs/bigv16k53w/best_netG.pt", "vocab.txt")}
    done = run_cli("weights", "pull", "ta40multi", "--allow-network")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "models" / "ta40multi" / "model_index.json").is_file()
    assert {p: len(hub.gets(p)) for p in fetched_before} == fetched_before  # complete files were not fetched again
    assert len(hub.gets(CKPT)) == 2


def test_a_full_disk_is_one_sentence_and_leaves_nothing(hub, tmp_path):
    def small_files_only():
        # The kernel refuses writes past 2 MB (EFBIG), as a full disk refuses them (ENOSPC).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    process = start_pull("bert-base-uncased", "--allow-network", preexec=small_files_only)
    _, err = process.communicate(timeout=300)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and lines[0].startswith("mka: error:"), err
    assert "no room left" in err and "free disk space" in err
    assert home_files(tmp_path) == []
    assert not [p for p in blobs(tmp_path) if "incomplete" in p.name]


def test_family_a_prints_the_manual_step_and_takes_from(hub, released, tmp_path):
    assert_clean_error(run_cli("weights", "pull", "maa1"), "Google Drive", "Text-to-Audio/Make-An-Audio",
                       "mka weights pull maa1 --from useful_ckpts/")
    folder = tmp_path / "useful_ckpts"
    (folder / "bigvgan").mkdir(parents=True)
    (folder / "maa1_full.ckpt").write_bytes(released[SPACE][CKPT])  # maa1 and ta40multi share the layout
    for name in ("args.yml", "best_netG.pt"):
        (folder / "bigvgan" / name).write_bytes(released[SPACE][f"vocoder/logs/bigv16k53w/{name}"])
    # Offline, the tokenizer it needs is named with the command.
    assert_clean_error(run_cli("weights", "pull", "maa1", "--from", folder), "vocab.txt", "--allow-network")
    done = run_cli("weights", "pull", "maa1", "--from", folder, "--allow-network")
    assert done.returncode == 0, done.stderr
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained("maa1", device="cpu")
    assert pipe.config.vocoder == "bigvgan" and pipe.config.mel.scaling != "db_unit"
    assert_clean_error(run_cli("weights", "pull", "maa1", "--from", tmp_path / "nowhere"), "no such file or folder")


def test_the_listing_reports_packaged_weights_and_states(hub, tmp_path):
    rows = {r["name"]: r for r in json.loads(run_cli("weights", "--json").stdout)}
    minilm = rows["all-minilm-l6-v2"]
    assert minilm["state"] == "present" and minilm["present"] and minilm["disk_bytes"] > 1_000_000
    assert rows["ta40multi"]["state"] == "missing" and rows["ta40multi"]["pull"] == "mka weights pull ta40multi"
    assert rows["maa1"]["pull"] == "mka weights pull maa1 --from FILE_OR_DIR"
    text = run_cli("weights", env={"COLUMNS": "200"}).stdout
    assert "all-minilm-l6-v2" in text and "present" in text
