"""`mka weights pull` against a local hub: pull, convert, generate; resume; checksums; missing repo or file; offline."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from tests.conftest import assert_clean_error, run_cli
from tests.weights.conftest import blobs, home_files

CKPT = "useful_ckpts/ta40multi_epoch=000085.ckpt"
VOCODER = "vocoder/logs/bigv16k53w/best_netG.pt"
SPACE = ("space", "DiffusionSpeech/Make_An_Audio")
BERT = ("model", "google-bert/bert-base-uncased")


def test_pull_converts_on_arrival_then_generate_by_name(hub, tmp_path):
    # The acceptance's two commands, network allowed through the environment.
    done = run_cli("weights", "pull", "ta40multi", env={"MKA_ALLOW_NETWORK": "1"})
    assert done.returncode == 0, done.stderr
    home = tmp_path / "home"
    assert (home / "models" / "ta40multi" / "model_index.json").is_file()
    assert sorted(p.name for p in (home / "weights" / "maa-b-bigvgan").iterdir()) == ["args.yml", "best_netG.pt"]
    assert (home / "weights" / "bert-base-uncased" / "vocab.txt").is_file()
    assert "ta40multi: fetched ta40multi_epoch=000085.ckpt; converted in" in done.stdout
    # Digests the catalogue lacks are recorded after this first verified pull.
    record = json.loads((home / "weights" / "checksums.json").read_text())
    import hashlib
    assert record["ta40multi"]["ta40multi_epoch=000085.ckpt"] == hashlib.sha256(hub.repos[SPACE][CKPT]).hexdigest()
    assert set(record["maa-b-bigvgan"]) == {"args.yml", "best_netG.pt"}

    out = tmp_path / "dog.wav"
    gen = run_cli("generate", "--model", "ta40multi", "a dog barks", "--steps", "2", "--duration", "1", "--seed", "3",
                  "--out", out)  # --steps / --duration only keep the test short
    assert gen.returncode == 0, gen.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) >= 16000 * 0.9 and abs(audio).max() > 0

    from mka_core.pipeline import Pipeline

    from mka_core.model_lookup import resolve_model

    # One resolver for generate, serve, eval and Python.
    assert resolve_model("ta40multi") == (home / "models" / "ta40multi").resolve()
    pipe = Pipeline.from_pretrained("ta40multi", device="cpu")
    assert pipe.config.vocoder == "bigvgan" and pipe.config.mel.scaling == "db_unit"

    listing = json.loads(run_cli("weights", "--json").stdout)
    rows = {r["name"]: r for r in listing}
    assert rows["ta40multi"]["state"] == "converted" and rows["ta40multi"]["disk_bytes"] > len(hub.repos[SPACE][CKPT])
    assert rows["maa-b-bigvgan"]["state"] == "present" and rows["inpaint7"]["state"] == "missing"
    # A second pull uses what is there: no request reaches the hub.
    before = len(hub.log)
    again = run_cli("weights", "pull", "ta40multi")
    assert again.returncode == 0 and "already in place" in again.stdout and len(hub.log) == before


def test_a_cut_connection_resumes_from_the_byte_it_stopped_at(hub, tmp_path):
    from huggingface_hub import constants

    # huggingface_hub writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MiB): cut after the first one.
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    assert len(hub.repos[SPACE][CKPT]) > chunk + 4096
    hub.cut_after[CKPT] = chunk + 4096
    done = run_cli("weights", "pull", "ta40multi", "--allow-network")
    assert done.returncode == 0, done.stderr
    assert hub.gets(CKPT) == [None, f"bytes={chunk}-"]
    assert (tmp_path / "home" / "models" / "ta40multi" / "model_index.json").is_file()


def test_an_interrupted_pull_leaves_nothing_and_the_next_one_fetches_only_the_rest(hub, tmp_path):
    hub.fail_status[VOCODER] = 500
    failed = run_cli("weights", "pull", "ta40multi", "--allow-network")
    assert_clean_error(failed, "HTTP 500", "best_netG.pt", "mka weights pull maa-b-bigvgan")
    assert home_files(tmp_path) == []  # nothing partial under MKA_HOME
    assert not [p for p in blobs(tmp_path) if p.name.endswith(".incomplete")]
    del hub.fail_status[VOCODER]
    done = run_cli("weights", "pull", "ta40multi", "--allow-network")
    assert done.returncode == 0, done.stderr
    assert len(hub.gets("vocoder/logs/bigv16k53w/args.yml")) == 1  # complete before the failure: kept
    assert len(hub.gets(VOCODER)) == 2 and len(hub.gets(CKPT)) == 1


def test_a_corrupted_download_is_refused_and_deleted(hub, tmp_path):
    data = hub.repos[SPACE][CKPT]
    hub.tamper[CKPT] = data[:1000] + bytes(b ^ 0xFF for b in data[1000:1100]) + data[1100:]
    failed = run_cli("weights", "pull", "ta40multi", "--allow-network")
    assert_clean_error(failed, "ta40multi_epoch=000085.ckpt", "failed its checksum", "deleted")
    assert not (tmp_path / "home" / "models").exists() or not list((tmp_path / "home" / "models").iterdir())
    import hashlib
    assert hashlib.sha256(data).hexdigest() not in [p.name for p in blobs(tmp_path)]


def test_a_file_that_differs_from_the_recorded_digest_is_refused(hub, tmp_path):
    assert run_cli("weights", "pull", "bert-base-uncased", "--allow-network").returncode == 0
    hub.repos[BERT]["vocab.txt"] = hub.repos[BERT]["vocab.txt"] + b"extra\n"  # the repo changed under the same name
    import shutil

    shutil.rmtree(tmp_path / "hf")  # a fresh download cache: the file is fetched again
    failed = run_cli("weights", "pull", "bert-base-uncased", "--allow-network", "--force")
    assert_clean_error(failed, "vocab.txt", "failed its checksum", "recorded")
    assert (tmp_path / "home" / "weights" / "bert-base-uncased" / "vocab.txt").is_file()  # the verified copy stays


def test_a_missing_repo_or_file_is_one_sentence(hub, tmp_path):
    hub.repos[BERT].pop("vocab.txt")
    assert_clean_error(run_cli("weights", "pull", "bert-base-uncased", "--allow-network"),
                       "has no file 'vocab.txt'", "google-bert/bert-base-uncased")
    hub.repos.pop(BERT)
    assert_clean_error(run_cli("weights", "pull", "bert-base-uncased", "--allow-network"),
                       "google-bert/bert-base-uncased", "does not exist")
    assert home_files(tmp_path) == []


def test_offline_names_the_files_where_they_go_and_the_command(hub, tmp_path):
    failed = run_cli("weights", "pull", "ta40multi")
    assert_clean_error(failed, "network is not allowed", "ta40multi_epoch=000085.ckpt", "best_netG.pt", "vocab.txt",
                       str(tmp_path / "home" / "models" / "ta40multi"), "mka weights pull ta40multi --allow-network")
    assert hub.log == []  # not one request
    assert_clean_error(run_cli("weights", "pull", "ta40multi", "--allow-network", env={"HF_HUB_OFFLINE": "1"}),
                       "HF_HUB_OFFLINE")
    assert hub.log == []
    # MKA_ALLOW_NETWORK=1 is the flag's equivalent.
    assert run_cli("weights", "pull", "bert-base-uncased", env={"MKA_ALLOW_NETWORK": "1"}).returncode == 0


def test_a_model_not_pulled_yet_says_the_command(hub):
    assert_clean_error(run_cli("generate", "--model", "ta40multi", "a dog barks"),
                       "not pulled yet", "mka weights pull ta40multi")
    from mka_core.errors import InputError
    from mka_core.pipeline import Pipeline

    with pytest.raises(InputError, match="mka weights pull inpaint7"):
        Pipeline.from_pretrained("inpaint7")


def test_unknown_names_and_packaged_weights(hub):
    assert_clean_error(run_cli("weights", "pull", "no-such-model"), "not in the weights catalogue", "ta40multi")
    assert_clean_error(run_cli("weights", "pull", "ta40multi", "inpaint7", "--from", "x.ckpt"), "one entry")
    done = run_cli("weights", "pull", "all-minilm-l6-v2")
    assert done.returncode == 0 and "ships inside an installed pip package" in done.stdout and hub.log == []
