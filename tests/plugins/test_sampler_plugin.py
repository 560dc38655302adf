"""Samplers are plugins: a pip-installed distribution adds one through ``register_samplers``,
and `mka generate`, the Python API and the web app's model info see it."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from mka_core.errors import InputError, PluginError
from mka_core.plugins import manager
from tests.conftest import assert_clean_error, run_cli
from tests.plugins.fake_dists import make_distribution, on_sys_path

# A real (if simple) third-party sampler: deterministic Euler steps of the probability-flow ODE
# in sigma = sqrt((1 - abar) / abar), on timesteps spaced linearly in t.
EULER_PLUGIN = '''
import math

import numpy as np
from pydantic import Field

from mka_core import hookimpl
from mka_core.config import StrictModel
from mka_core.diffusion.samplers.base import Sampler, timestep_tensor

CALLS = []


class EulerOptions(StrictModel):
    churn: float = Field(0.0, ge=0.0, le=0.0, description="kept at 0: deterministic")


class EulerSampler(Sampler):
    name = "euler-test"
    Options = EulerOptions

    def timesteps(self, schedule, steps):
        n = schedule.num_train_steps
        return [int(round(t)) for t in np.linspace(n - 1, 0, steps)]

    def step(self, denoiser, x, t, t_next, schedule, generators, state):
        CALLS.append(t)
        a = float(schedule.alphas_cumprod64[t])
        eps = denoiser(x, timestep_tensor(t, x)).float()
        sigma = math.sqrt((1 - a) / a)
        z = x / math.sqrt(a)  # the variance-exploding variable of the same trajectory
        if t_next is None:
            return z - sigma * eps
        a_next = float(schedule.alphas_cumprod64[t_next])
        sigma_next = math.sqrt((1 - a_next) / a_next)
        return (z + (sigma_next - sigma) * eps) * math.sqrt(a_next)


@hookimpl
def register_samplers(register):
    register(EulerSampler)
'''

NOT_A_SAMPLER = '''
from mka_core import hookimpl


class Impostor:
    name = "impostor"


@hookimpl
def register_samplers(register):
    register(Impostor)
'''


@pytest.fixture
def euler_installed(tmp_path, monkeypatch):
    root = tmp_path / "site"
    make_distribution(root, "fake-euler", "0.3.0", {"fake_euler": EULER_PLUGIN}, {"euler": "fake_euler"})
    make_distribution(root, "fake-impostor", "0.1", {"fake_impostor": NOT_A_SAMPLER}, {"impostor": "fake_impostor"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-euler,fake-impostor")
    with on_sys_path(root):
        manager.reset_plugins()
        yield
    manager.reset_plugins()


def test_an_installed_sampler_is_registered_with_its_provenance(euler_installed):
    from mka_core.diffusion.samplers import get_sampler, sampler_names

    assert sampler_names() == ["consistency", "ddim", "dpm++2m", "euler-test", "impostor"]
    reg = manager.registry().get("sampler", "euler-test")
    assert (reg.distribution, reg.version, reg.plugin) == ("fake-euler", "0.3.0", "fake-euler:euler")
    assert manager.registry().get("sampler", "ddim").distribution == "mka"
    with pytest.raises(InputError, match="Invalid options for sampler 'euler-test'"):
        get_sampler("euler-test", churn=1.0)
    with pytest.raises(PluginError, match="from .fake-impostor. is not a Sampler subclass"):
        get_sampler("impostor")


def test_generate_with_a_plugin_sampler_from_the_cli_and_the_api(euler_installed, tiny_model_dir, tmp_path):
    import fake_euler

    from mka_core.pipeline import Pipeline

    help_text = run_cli("generate", "--help", env={"MKA_LOAD_PLUGINS": "fake-euler"}).stdout
    assert "euler-test" in " ".join(help_text.split())

    wav = tmp_path / "out.wav"
    done = run_cli("generate", "--model", tiny_model_dir, "a dog barks", "--sampler", "euler-test", "--steps", "4",
                   "--duration", "1", "--seed", "3", "-o", wav, env={"MKA_LOAD_PLUGINS": "fake-euler"})
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(wav)
    assert rate == 16000 and len(audio) == 16000 and abs(audio).max() > 0
    assert fake_euler.CALLS == [999, 666, 333, 0]  # the plugin's own steps ran the U-Net
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert '"sampler": "euler-test"' in json.dumps(sidecar)  # the sidecar records which sampler made the file

    manager.reset_plugins()
    fake_euler.CALLS.clear()
    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    a = pipe(["a dog barks"], sampler="euler-test", steps=4, duration=1.0, seed=3)
    b = pipe(["a dog barks"], sampler="euler-test", steps=4, duration=1.0, seed=3)
    assert torch.equal(a.waveforms, b.waveforms) and len(fake_euler.CALLS) == 8
    assert a.metadata[0]["sampler"] == "euler-test"
    other = pipe(["a dog barks"], sampler="ddim", steps=4, duration=1.0, seed=3)
    assert not torch.allclose(a.latents, other.latents)


def test_the_web_apps_model_info_lists_installed_samplers(euler_installed, tiny_model_dir):
    from mka_core.pipeline import Pipeline
    from mka_core.serve.limits import Limits
    from mka_core.serve.runtime import ModelRuntime

    runtime = ModelRuntime(Pipeline.from_pretrained(tiny_model_dir, device="cpu"), tiny_model_dir, Limits())
    assert "euler-test" in runtime.describe()["samplers"]


def test_an_unknown_sampler_is_one_sentence_naming_the_installed_ones(tiny_model_dir, tmp_path):
    done = run_cli("generate", "--model", tiny_model_dir, "a dog", "--sampler", "euler-test", "--steps", "2",
                   "--duration", "1", "-o", tmp_path / "x.wav")
    assert_clean_error(done, "euler-test", "consistency, ddim, dpm++2m")
