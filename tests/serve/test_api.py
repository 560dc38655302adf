"""The JSON API of `mka serve` on a tiny bert pipeline: generation, files, bad input, the queue."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from mka_core.serve.limits import Limits
from tests.conftest import run_cli
from tests.serve.helpers import (
    call,
    call_json,
    png_bytes,
    start_server,
    upload,
    wait_for_job,
    wav_bytes,
)


@pytest.fixture(scope="module")
def runtime(tiny_model_dir):
    from mka_core.pipeline import Pipeline
    from mka_core.serve.runtime import ModelRuntime

    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    return ModelRuntime(pipe, tiny_model_dir, Limits())


@pytest.fixture(scope="module")
def live(runtime, tmp_path_factory):
    server = start_server(runtime, tmp_path_factory.mktemp("serve"))
    yield server
    server.close()


def submit(base: str, **fields) -> dict:
    status, job = call_json(f"{base}/api/jobs", "POST", fields)
    assert status == 202, job
    return job


def assert_one_sentence_error(status: int, body: dict, expected_status: int, *fragments: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"}, body
    message = body["error"]
    assert "\n" not in message and "Traceback" not in message and message.endswith("."), message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)


# -- generation and its files ------------------------------------------------------------------------


def test_generates_candidates_and_serves_every_file(live):
    job = wait_for_job(live.url, submit(live.url, inputs=["a bell"], steps=2, duration=0.5, seed=3, n=2)["id"])
    assert job["status"] == "done", job
    assert [o["seed"] for o in job["outputs"]] == [3, 4]
    assert job["step"] == job["total"] == 2
    urls = job["outputs"][0]["urls"]

    status, headers, audio = call(live.url + urls["audio"])
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(audio))
    assert rate == 16000 and samples.shape == (8000,)

    status, _, raw = call(live.url + urls["sidecar"])
    sidecar = json.loads(raw)
    assert sidecar["format"] == "mka-generation" and sidecar["seed"] == 3
    assert sidecar["request"]["inputs"] == ["a bell"] and sidecar["request"]["n"] == 2

    assert call(live.url + urls["spectrogram"])[2].startswith(b"\x89PNG")
    assert np.load(io.BytesIO(call(live.url + urls["mel"])[2])).shape == (80, 32)

    status, headers, bundle = call(live.url + urls["bundle"])
    names = zipfile.ZipFile(io.BytesIO(bundle)).namelist()
    assert headers["Content-Disposition"].startswith("attachment") and sorted(names) == sorted(
        [job["outputs"][0]["name"], job["outputs"][0]["name"] + ".json", job["outputs"][0]["name"] + ".png"])
    assert "attachment" in call(live.url + urls["download_audio"])[1]["Content-Disposition"]

    status, headers, part = call(live.url + urls["audio"], headers={"Range": "bytes=10-19"})
    assert status == 206 and part == audio[10:20] and headers["Content-Range"] == f"bytes 10-19/{len(audio)}"


def test_a_downloaded_sidecar_replays_bit_for_bit(live, tmp_path):
    job = wait_for_job(live.url, submit(live.url, inputs=["rain"], steps=2, duration=0.5, seed=11)["id"])
    urls = job["outputs"][0]["urls"]
    sidecar = tmp_path / "rain.wav.json"
    sidecar.write_bytes(call(live.url + urls["sidecar"])[2])
    replayed = run_cli("generate", "--replay", sidecar, "-o", tmp_path / "again.wav")
    assert replayed.returncode == 0, replayed.stderr
    assert (tmp_path / "again.wav").read_bytes() == call(live.url + urls["audio"])[2]


def test_history_lists_jobs_newest_first(live):
    first = wait_for_job(live.url, submit(live.url, inputs=["one"], steps=1, duration=0.2)["id"])
    second = wait_for_job(live.url, submit(live.url, inputs=["two"], steps=1, duration=0.2)["id"])
    status, body = call_json(f"{live.url}/api/jobs")
    ids = [job["id"] for job in body["jobs"]]
    assert status == 200 and ids.index(second["id"]) < ids.index(first["id"])
    assert first["outputs"][0]["seed"] >= 0  # "random" seeds are drawn and reported


def test_inpainting_keeps_everything_outside_the_drawn_boxes(live):
    status, init = upload(live.url, "audio", wav_bytes(2.0), "tone.wav")
    assert status == 201, init
    assert init["frames"] == 125 and init["n_mels"] == 80 and init["duration"] == 2.0
    boxes = [{"start": 0.512, "end": 1.024}, {"start": 1.5, "end": 1.8, "low_bin": 10, "high_bin": 30}]
    job = wait_for_job(live.url, submit(live.url, task="inpaint", init_audio=init["id"], mask=boxes, inputs=["birds"],
                                        task_options={"variant": "blend"}, steps=2, seed=0)["id"])
    assert job["status"] == "done", job
    before = np.load(io.BytesIO(call(live.url + init["mel_npy"])[2]))
    after = np.load(io.BytesIO(call(live.url + job["outputs"][0]["urls"]["mel"])[2]))
    assert before.shape == after.shape == (80, 125)
    drawn = np.zeros_like(before, dtype=bool)
    drawn[:, 32:64] = True                 # 0.512-1.024 s = frames 32..63, every bin
    drawn[10:31, 93:113] = True            # 1.5-1.8 s = frames 93..112, bins 10..30
    np.testing.assert_allclose(after[~drawn], before[~drawn], atol=1e-5)
    assert np.abs(after[drawn] - before[drawn]).mean() > 0.1
    sidecar = json.loads(call(live.url + job["outputs"][0]["urls"]["sidecar"])[2])
    assert sidecar["request"]["task"] == "inpaint" and "@" in sidecar["request"]["mask"]


def test_sdedit_takes_an_uploaded_init_audio(live):
    _, init = upload(live.url, "audio", wav_bytes(0.6, rate=22050), "tone.wav")
    job = wait_for_job(live.url, submit(live.url, task="sdedit", init_audio=init["id"], inputs=["a dog"],
                                        task_options={"strength": 0.3}, steps=2, seed=0)["id"])
    assert job["status"] == "done", job
    assert job["outputs"][0]["duration"] == pytest.approx(0.6)  # the init audio's length, resampled to 16 kHz


# -- bad uploads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "status", "fragments"),
    [
        ("image", png_bytes()[:300], 400, ["truncated or corrupt"]),
        ("audio", b"definitely not a sound file " * 40, 415, ["not audio", "WAV"]),
        ("audio", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 60, 415, ["not audio"]),
        ("audio", png_bytes(), 415, ["is an image, not audio"]),
        ("image", wav_bytes(0.2), 415, ["is audio, not an image"]),
        ("video", png_bytes(), 415, ["is an image, not a video"]),
        ("video", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, 400, ["no decodable video frame"]),
        ("text", b"hello", 400, ["unknown upload kind"]),
        ("audio", b"", 400, ["empty"]),
        ("audio", wav_bytes(0.01), 400, ["at least 0.1 s"]),
    ],
)
def test_bad_uploads_get_one_clear_json_error_and_leave_nothing(live, kind, data, status, fragments):
    before = sorted(p.name for p in live.folders.uploads.iterdir())
    code, body = upload(live.url, kind, data)
    assert_one_sentence_error(code, body, status, *fragments)
    assert sorted(p.name for p in live.folders.uploads.iterdir()) == before


def test_oversized_uploads_are_refused_before_they_are_read(runtime, tmp_path):
    small = start_server(runtime, tmp_path, limits=Limits(upload_bytes={"audio": 4000, "image": 4000, "video": 4000}))
    try:
        code, body = upload(small.url, "audio", wav_bytes(0.5))
        assert_one_sentence_error(code, body, 413, "limit")
        assert list(small.folders.uploads.iterdir()) == []
        assert call(f"{small.url}/api/info")[0] == 200  # still serving
    finally:
        small.close()


def test_uploads_keep_a_generated_name_and_a_detected_suffix(live):
    code, body = upload(live.url, "image", png_bytes(), "../../etc/passwd")
    assert code == 201 and body["format"] == "PNG" and body["label"] == "passwd"
    stored = live.api.uploads.get(body["id"]).path
    assert stored.parent == live.folders.uploads and stored.name == f"{body['id']}.png"


# -- bad requests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"inputs": ["x"], "stepz": 3}, ["stepz", "extra"]),
        ({"task": "nope", "inputs": ["x"]}, ["unknown task 'nope'"]),
        ({"inputs": ["x"], "task": "sdedit", "init_audio": "../../etc/passwd"}, ["no upload with id"]),
        ({"inputs": [{"upload": "/etc/passwd"}]}, ["takes text"]),
        ({"task": "inpaint", "mask": "0-1,/etc/x.npy"}, ["mask"]),
        ({"inputs": ["x"], "n": 100}, ["limit of 8"]),
        ({"inputs": ["   "]}, ["prompt 1 is empty"]),
        ({"inputs": ["x"], "cond": "clip-image"}, ["does not write into", "bert"]),
        ({"inputs": ["x"], "duration": 1000}, ["outside the supported range"]),
        ({"task": "t2a"}, ["needs a condition"]),
        ({"inputs": ["x"], "seed": -1}, ["seed"]),
        ({"inputs": ["x"], "sampler": "euler"}, ["unknown sampler", "ddim"]),
        ({"inputs": ["x"], "task": "sdedit", "task_options": {"strength": 3}}, ["strength"]),
        ({"inputs": ["x"], "task": "inpaint"}, ["needs an init audio"]),
    ],
)
def test_bad_job_requests_get_one_clear_json_error(live, body, fragments):
    status, answer = call_json(f"{live.url}/api/jobs", "POST", body)
    assert_one_sentence_error(status, answer, 400, *fragments)


def test_a_body_that_is_not_json_is_refused(live):
    status, _, raw = call(f"{live.url}/api/jobs", "POST", b"\xff{not json", {"Content-Type": "application/json"})
    assert_one_sentence_error(status, json.loads(raw), 400, "not JSON")


def test_a_mask_box_outside_the_audio_is_refused(live):
    _, init = upload(live.url, "audio", wav_bytes(1.0))
    status, answer = call_json(f"{live.url}/api/jobs", "POST", {"task": "inpaint", "init_audio": init["id"],
                                                               "mask": [{"start": 0.5, "end": 3.0}]})
    assert_one_sentence_error(status, answer, 400, "outside the init audio")


# -- the queue --------------------------------------------------------------------------------------------


def test_concurrent_requests_all_complete_in_order_and_nothing_is_lost(live):
    count = 6
    barrier = threading.Barrier(count)
    accepted: dict[int, dict] = {}

    def client(i: int) -> None:
        barrier.wait()
        accepted[i] = submit(live.url, inputs=[f"prompt {i}"], steps=2, duration=0.3, seed=i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(accepted) == count and len({job["id"] for job in accepted.values()}) == count
    finished = {i: wait_for_job(live.url, job["id"]) for i, job in accepted.items()}
    assert all(job["status"] == "done" for job in finished.values())
    by_arrival = sorted(finished.values(), key=lambda job: job["number"])
    assert [job["started_order"] for job in by_arrival] == sorted(job["started_order"] for job in by_arrival)
    assert all(a["finished"] <= b["started"] for a, b in itertools.pairwise(by_arrival))  # one at a time
    for i, job in finished.items():  # each client got its own result
        (output,) = job["outputs"]
        assert output["input"] == f"prompt {i}" and output["seed"] == i


def test_progress_is_reported_while_sampling(live):
    job = submit(live.url, inputs=["wind"], steps=60, duration=1.0, seed=0)
    seen = set()
    deadline = time.time() + 60
    while time.time() < deadline:
        _, state = call_json(f"{live.url}/api/jobs/{job['id']}")
        seen.add((state["status"], state["step"], state["total"]))
        if state["status"] == "done":
            break
        time.sleep(0.01)  # leave the worker the CPU (and the GIL)
    assert any(status == "running" and 0 < step < total == 60 for status, step, total in seen), sorted(seen)


def test_cancelling_a_running_job_leaves_no_files(live):
    job = submit(live.url, inputs=["long"], steps=400, duration=2.0)
    while call_json(f"{live.url}/api/jobs/{job['id']}")[1]["step"] < 2:
        time.sleep(0.01)
    status, _ = call_json(f"{live.url}/api/jobs/{job['id']}", "DELETE")
    finished = wait_for_job(live.url, job["id"])
    assert status == 200 and finished["status"] == "cancelled" and finished["outputs"] == []
    assert not (live.folders.jobs / job["id"]).exists()


# -- the plugin registry ----------------------------------------------------------------------------------


def test_info_lists_what_the_plugin_registry_holds_including_a_new_plugin(runtime, tmp_path):
    from mka_core import Task, TaskOutput, hookimpl
    from mka_core.plugins import manager

    class Backwards(Task):
        name = "backwards"
        summary = "Generate, then reverse."

        def run(self, pipeline, request):
            latents = pipeline.sample(request)
            return TaskOutput(mel=pipeline.decode_latents(latents).flip(-1), latents=latents)

    class Plugin:
        @hookimpl
        def register_tasks(self, register):
            register(Backwards)

    manager.register_in_process(Plugin(), name="third-party", distribution="mka-backwards", version="1.2")
    server = start_server(runtime, tmp_path)
    try:
        _, info = call_json(f"{server.url}/api/info")
        tasks = {t["name"]: t for t in info["tasks"]}
        assert {"t2a", "sdedit", "inpaint", "backwards"} <= set(tasks)
        assert tasks["backwards"]["distribution"] == "mka-backwards"
        assert {c["name"] for c in info["conditioners"]} == set(manager.names("conditioner"))
        assert [c["name"] for c in info["conditioners"] if c["fits"]] == ["bert"]
        assert tasks["sdedit"]["options"][0]["name"] == "strength"
        assert tasks["inpaint"]["options"][0]["choices"] == ["finetuned", "blend"]
        job = wait_for_job(server.url, submit(server.url, task="backwards", inputs=["x"], steps=1, duration=0.3)["id"])
        assert job["status"] == "done", job
    finally:
        server.close()
