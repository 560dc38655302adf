"""GenerationRequest: one rule per value, the same for the CLI, the server's JSON body and the Python API."""

from __future__ import annotations

import json

import pytest
import torch

from mka_core.errors import InputError
from mka_core.request import SEED_LIMIT, GenerationRequest, build_request, request_from_dict
from mka_core.serve.requests import job_request_from_dict, parse_job_request
from tests.conftest import assert_clean_error, run_cli


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"seed": -1}, ["seed -1", "out of range", "2^63"]),
        ({"seed": 2**70}, ["out of range"]),
        ({"seed": SEED_LIMIT - 1, "inputs": ["a", "b"]}, ["out of range", "2^63 - 2"]),
        ({"seed": SEED_LIMIT - 3, "inputs": ["a"], "n": 4}, ["out of range", "4 output"]),
        ({"seed": True}, ["'seed'", "whole number"]),
        ({"seed": 1.5}, ["'seed'", "whole number"]),
        ({"guidance": float("nan")}, ["'guidance'", "finite"]),
        ({"guidance": float("inf")}, ["'guidance'", "finite"]),
        ({"guidance": -0.5}, ["'guidance'", "between 0 and 100"]),
        ({"guidance": 101}, ["'guidance'", "between 0 and 100"]),
        ({"duration": 0}, ["'duration'", "outside the supported range"]),
        ({"duration": float("nan")}, ["'duration'", "finite"]),
        ({"duration": 121}, ["'duration'", "outside the supported range"]),
        ({"steps": 0}, ["'steps'", "between 1 and 1000"]),
        ({"steps": 1001}, ["'steps'", "between 1 and 1000"]),
        ({"n": 0}, ["'n'", "at least 1"]),
        ({"inputs": ["x"] * 65, "n": 4}, ["260 outputs", "limit of 256"]),
        ({"inputs": ["ok", "  "]}, ["input 2 is empty"]),
        ({"task": " "}, ["'task'", "empty"]),
        ({"stepz": 3}, ["'stepz'", "extra field"]),
    ],
)
def test_each_bad_value_is_one_sentence_naming_it(fields, fragments):
    with pytest.raises(InputError) as caught:
        request_from_dict(fields)
    message = str(caught.value)
    assert message.startswith("Invalid generation request") and message.endswith(".") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_the_seed_rule_counts_every_output_of_the_batch():
    # Output i uses seed + i: the last output's seed must still be below 2^63.
    assert request_from_dict({"seed": SEED_LIMIT - 6, "inputs": ["a", "b", "c"], "n": 2}).seed == SEED_LIMIT - 6
    with pytest.raises(InputError):
        request_from_dict({"seed": SEED_LIMIT - 5, "inputs": ["a", "b", "c"], "n": 2})
    assert request_from_dict({"seed": 0}).seed == 0
    assert request_from_dict({"seed": "random"}).seed is None
    assert request_from_dict({"seed": "12"}).seed == 12  # flags arrive as text


def test_good_values_pass_and_round_trip_through_json():
    request = build_request(inputs=["a bell"], task="t2a", steps=3, guidance=0.0, duration=0.1, seed=4, n=2,
                            sampler="ddim", sampler_options={"eta": 0.0}, mask="0.1-0.2", init_audio=None)
    again = GenerationRequest.model_validate_json(request.model_dump_json())
    assert again == request and again.outputs == 2
    changed = request.with_changes(steps=5)
    assert changed.steps == 5 and request.steps == 3
    with pytest.raises(InputError, match="'steps'"):
        request.with_changes(steps=0)  # a change is validated like the rest


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": ["x"], "seed": -1}, "out of range"),
        ({"inputs": ["x"], "seed": 2**70}, "out of range"),
        ({"inputs": ["x"], "guidance": "nan"}, "'guidance' must be a finite number"),
        ({"inputs": ["x"], "steps": 0}, "'steps' must be between 1 and 1000"),
        ({"inputs": ["x"], "duration": 1000}, "outside the supported range"),
    ],
)
def test_the_server_body_follows_the_same_rules(body, fragment):
    with pytest.raises(InputError) as server:
        parse_job_request(json.dumps(body).encode())
    with pytest.raises(InputError) as api:
        request_from_dict(body)
    assert fragment in str(server.value) and str(server.value) == str(api.value)


def test_the_server_body_keeps_uploads_and_boxes_and_random_seeds():
    job = job_request_from_dict({"inputs": [{"upload": "abc"}], "init_audio": "def", "seed": "random",
                                 "mask": [{"start": 0.1, "end": 0.2}]})
    assert job.fixed_seed is None and job.inputs[0].upload == "abc"
    with pytest.raises(InputError):  # a path is never a mask on the server
        job_request_from_dict({"mask": "/etc/passwd"})


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--guidance", "nan"], ["'guidance'", "finite"]),
        (["--seed", str(2**70)], ["seed 1180591620717411303424", "out of range"]),
        (["--seed", "-1"], ["seed -1", "out of range"]),
        (["--steps", "0"], ["'steps'"]),
        (["--n", "0"], ["'n'"]),
        (["--duration", "abc"], ["'duration'"]),
    ],
)
def test_the_cli_refuses_bad_values_before_loading_anything(tmp_path, flags, fragments):
    # No model named: a refused request never reaches the (possibly missing) default model.
    result = run_cli("generate", "--model", tmp_path / "no-such-model", "x", *flags, "-o", tmp_path / "a.wav")
    assert_clean_error(result, *fragments)
    assert "loading the model" not in result.stderr
    assert not (tmp_path / "a.wav").exists()


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    from mka_core.pipeline import Pipeline

    return Pipeline.from_pretrained(tiny_model_dir, device="cpu")


def test_the_python_api_takes_a_request_and_keywords_build_the_same_one(pipe):
    request = GenerationRequest(inputs=["a bell", "rain"], n=2, seed=5, duration=0.3, steps=2)
    by_request = pipe(request)
    by_keywords = pipe(["a bell", "rain"], n=2, seed=5, duration=0.3, steps=2)
    assert torch.equal(by_request.waveforms, by_keywords.waveforms)
    assert by_request.request == by_keywords.request
    ran = by_request.request  # every default resolved: what a sidecar records
    assert (ran.task, ran.cond, ran.sampler, ran.guidance, ran.seed) == ("t2a", "bert", pipe.config.defaults.sampler,
                                                                        pipe.config.defaults.guidance, 5)
    assert [m["index"] for m in by_request.metadata] == [0, 1, 2, 3]
    bare = pipe("a bell", seed=5, duration=0.3, steps=2)  # one input given bare is a batch of one
    assert bare.request.inputs == ["a bell"] and torch.equal(bare.waveforms[0], by_request.waveforms[0])
    with pytest.raises(InputError, match="either a GenerationRequest or keyword"):
        pipe(request, steps=3)
    with pytest.raises(InputError, match="'guidance'"):
        pipe(["a bell"], guidance=float("nan"), duration=0.3, steps=1)


def test_only_makes_part_of_the_batch_with_the_same_seeds_and_samples(pipe):
    from mka_core.generate import generate

    request = GenerationRequest(inputs=["a dog barking in the rain", "bell", "wind over the sea"], n=2, seed=9,
                                duration=0.3, steps=2)
    whole = generate(pipe, request)
    part = generate(pipe, request, only=range(2, 5))
    assert part.indices == [2, 3, 4] and [m["seed"] for m in part.metadata] == [11, 12, 13]
    assert [m["input_index"] for m in part.metadata] == [1, 1, 2]
    assert torch.equal(part.waveforms, whole.waveforms[2:5])
    assert part.request == whole.request
    with pytest.raises(InputError, match="'only'"):
        generate(pipe, request, only=range(4, 9))


def test_a_precomputed_condition_batch_still_gets_the_seed_rule(pipe):
    condition = pipe.conditioner(["a", "b", "c"])
    with pytest.raises(InputError, match="out of range"):
        pipe(condition=condition, seed=SEED_LIMIT - 2, duration=0.3, steps=1)


def test_the_server_takes_no_conditioner_options_since_they_can_name_files():
    with pytest.raises(InputError, match="'cond_options' is not accepted by the server"):
        job_request_from_dict({"inputs": ["x"], "cond_options": {"weights": "/etc"}})
