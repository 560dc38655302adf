"""`mka train distill`: latent consistency distillation into a few-step student.

(tests/training/test_distill.py is about *expert distillation* of captions, a different thing.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mka_core.diffusion.schedule import NoiseSchedule
from tests.conftest import assert_clean_error, run_cli
from training.checkpoint import latest_checkpoint, load_checkpoint

SMALL = ("--set", "data.crop_frames=32", "--set", "run.batch_size=3", "--set", "optim.warmup_steps=0",
         "--set", "run.log_every=1", "--set", "model.cache_embeddings=false", "--set", "model.sample_steps=1")


def distill(teacher: Path, manifest: Path, out: Path, steps: int, *extra: str):
    return run_cli("train", "distill", "--teacher", teacher, "--data", manifest, "--steps", str(steps),
                   *SMALL, "--out", out, *extra)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny random model with a random (not zero-initialised) output conv: a teacher whose noise
    predictions depend on their inputs, so that every part of the student gets gradients at once."""
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    torch.manual_seed(0)
    pipe.unet.out[-1].reset_parameters()
    folder = tmp_path_factory.mktemp("teacher") / "tiny-teacher"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, teacher_dir, sound_manifest) -> Path:
    run = tmp_path_factory.mktemp("distill") / "run"
    done = distill(teacher_dir, sound_manifest, run, 4, "--set", "optim.lr=1e-3")
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_distill_exports_a_pipeline_whose_defaults_are_the_consistency_sampler(student_dir, teacher_dir, tmp_path):
    from mka_core.pipeline import Pipeline

    export = student_dir / "export"
    index = json.loads((export / "model_index.json").read_text())
    defaults = index["pipeline"]["defaults"]
    assert defaults["sampler"] == "consistency" and defaults["steps"] == 2 and defaults["guidance"] == 3.0
    assert defaults["sampler_options"] == {"original_steps": 50, "timestep_scaling": 10.0, "sigma_data": 0.5}
    metrics = [json.loads(line) for line in (student_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4]  # progress like every other target

    student = Pipeline.from_pretrained(export, device="cpu")
    teacher = Pipeline.from_pretrained(teacher_dir, device="cpu")
    assert student.unet.config.guidance_embed_dim == 256
    assert student.unet.config.model_dump(exclude={"guidance_embed_dim"}) == teacher.unet.config.model_dump(
        exclude={"guidance_embed_dim"})
    assert student.config.space == teacher.config.space and student.config.conditioner == teacher.config.conditioner

    calls = []
    original = student.unet.forward
    student.unet.forward = lambda *a, **k: calls.append(k.get("guidance")) or original(*a, **k)
    for steps in (1, 2, 4):
        calls.clear()
        result = student(["a steady low tone"], duration=1.0, steps=steps, seed=5)
        assert result.metadata[0]["sampler"] == "consistency"
        assert len(calls) == steps and all(float(w) == 3.0 for w in calls)  # one forward per step, w as input
        assert result.waveforms.shape == (1, 16000) and torch.isfinite(result.waveforms).all()

    # The CLI uses the recorded defaults: no --sampler or --steps needed.
    wav = tmp_path / "s.wav"
    done = run_cli("generate", "--model", export, "a steady low tone", "--duration", "1", "--seed", "1", "-o", wav)
    assert done.returncode == 0, done.stderr
    assert wav.is_file()


def test_the_student_starts_as_the_teacher_and_w_changes_its_output_after_training(student_dir, teacher_dir):
    from mka_core.pipeline import Pipeline
    from training.targets.distill import make_student

    teacher = Pipeline.from_pretrained(teacher_dir, device="cpu").unet
    fresh = make_student(teacher, 64)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([999, 259])
    context = torch.randn(2, 5, teacher.config.context_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = teacher(x, t, context=context)
        for w in (1.0, 3.0, 7.5):  # the zero-initialised w input: exactly the teacher at any scale
            assert torch.equal(fresh(x, t, context=context, guidance=w), reference)

    trained = Pipeline.from_pretrained(student_dir / "export", device="cpu")
    with torch.no_grad():
        low = trained.unet(x, t, context=context, guidance=torch.tensor([2.0, 2.0]))
        high = trained.unet(x, t, context=context, guidance=torch.tensor([4.0, 4.0]))
    assert (low - high).abs().max() > 1e-3 * low.abs().max()
    a = trained(["high beeps"], duration=1.0, guidance=2.0, seed=3)
    b = trained(["high beeps"], duration=1.0, guidance=4.0, seed=3)
    assert not torch.allclose(a.latents, b.latents)
    with pytest.raises(Exception, match="guidance=SCALE"):
        trained.unet(x, t, context=context)


def test_train_export_rebuilds_the_student_from_the_last_checkpoint(student_dir, tmp_path):
    done = run_cli("train", "export", student_dir, "--out", tmp_path / "again")
    assert done.returncode == 0, done.stderr[-2000:]
    a = json.loads((student_dir / "export" / "model_index.json").read_text())["pipeline"]
    b = json.loads((tmp_path / "again" / "model_index.json").read_text())["pipeline"]
    assert a["defaults"] == b["defaults"] and b["defaults"]["sampler"] == "consistency"


def test_boundary_condition_of_the_consistency_function():
    from training.targets.consistency_ode import ScheduleTables, consistency_output

    tables = ScheduleTables(NoiseSchedule(), torch.device("cpu"))
    x = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(2))
    eps = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    out = consistency_output(tables, x, eps, torch.tensor([0, 0, 0]), sigma_data=0.5, timestep_scaling=10.0)
    assert torch.equal(out, x)  # c_skip(0) = 1, c_out(0) = 0: f(x, 0) = x whatever the network says
    far = consistency_output(tables, x, eps, torch.tensor([999, 999, 999]), sigma_data=0.5, timestep_scaling=10.0)
    x0 = (x - tables.sigma[999] * eps) / tables.alpha[999]
    assert torch.allclose(far, x0, rtol=1e-5, atol=1e-5)  # far from 0 it is the network's x0 prediction


def test_dpm_solver_2_follows_the_exact_ode_closer_than_ddim():
    """On Gaussian data the probability-flow ODE is known; the second-order teacher step is closer."""
    from training.targets.consistency_ode import ScheduleTables, teacher_step, x0_from_eps

    schedule = NoiseSchedule()
    tables = ScheduleTables(schedule, torch.device("cpu"))
    abar = schedule.alphas_cumprod64
    mu, std = 0.5, 0.8

    def predict(x, t):
        a = abar[t].view(-1, 1, 1, 1)
        x0 = mu + (a.sqrt() * std**2 / (a * std**2 + 1 - a)) * (x.double() - a.sqrt() * mu)
        eps = ((x.double() - a.sqrt() * x0) / (1 - a).sqrt()).float()
        return x0_from_eps(tables, x, eps, t), eps

    x_t = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(4))
    t, s = torch.tensor([999, 519, 139, 19]), torch.tensor([979, 499, 119, 0])
    a_t, a_s = abar[t].view(-1, 1, 1, 1), abar[s].view(-1, 1, 1, 1)
    # (x - sqrt(a) mu) / sqrt(a std^2 + 1 - a) is constant along the exact ODE.
    exact = a_s.sqrt() * mu + (a_s * std**2 + 1 - a_s).sqrt() * (x_t.double() - a_t.sqrt() * mu) / (a_t * std**2 + 1 - a_t).sqrt()
    errors = {solver: (teacher_step(solver, predict, tables, x_t, t, s).double() - exact).abs().max().item()
              for solver in ("ddim", "dpm-solver-2")}
    assert errors["dpm-solver-2"] < errors["ddim"] / 4, errors  # 0.003 vs 0.022 here


def test_inpainting_unet_distils_and_inpaints_in_two_steps(tmp_path, teacher_dir, sound_manifest):
    from mka_core.pipeline import Pipeline
    from mka_plugins.tasks.inpaint import make_inpainting_pipeline

    inpaint_dir = tmp_path / "inpaint-teacher"
    make_inpainting_pipeline(Pipeline.from_pretrained(teacher_dir, device="cpu")).save_pretrained(inpaint_dir)
    run = tmp_path / "run"
    done = distill(inpaint_dir, sound_manifest, run, 2, "--set", "model.solver=dpm-solver-2")
    assert done.returncode == 0, done.stderr[-3000:]
    student = Pipeline.from_pretrained(run / "export", device="cpu")
    assert student.unet.config.in_channels == 9 and student.unet.config.guidance_embed_dim == 256
    assert student.config.defaults.task == "inpaint" and student.config.defaults.sampler == "consistency"
    row = sorted((sound_manifest.parent / "audio").glob("tone0.wav"))[0]
    result = student(["a steady low tone"], init_audio=str(row), mask="0.3-0.6", duration=1.0, seed=2)
    assert result.metadata[0]["sampler"] == "consistency" and torch.isfinite(result.waveforms).all()


def test_sdedit_and_blending_run_on_a_student(student_dir, tmp_path, sound_manifest):
    from mka_core.pipeline import Pipeline

    student = Pipeline.from_pretrained(student_dir / "export", device="cpu")
    init = sorted((sound_manifest.parent / "audio").glob("beeps0.wav"))[0]
    edit = student(["high beeps"], task="sdedit", init_audio=str(init), duration=1.0, seed=4,
                   task_options={"strength": 0.5})
    blend = student(["high beeps"], task="inpaint", init_audio=str(init), mask="0.2-0.5", duration=1.0, seed=4,
                    task_options={"variant": "blend"})
    for result in (edit, blend):
        assert result.metadata[0]["sampler"] == "consistency" and torch.isfinite(result.waveforms).all()


def test_bad_teacher_and_flags_are_one_sentence(tmp_path, sound_manifest, student_dir):
    done = run_cli("train", "distill", "--data", sound_manifest, "--steps", "1", "--out", tmp_path / "a")
    assert_clean_error(done, "--teacher")
    done = distill(tmp_path / "missing", sound_manifest, tmp_path / "b", 1)
    assert_clean_error(done, "missing")
    done = distill(student_dir / "export", sound_manifest, tmp_path / "c", 1)
    assert_clean_error(done, "already a consistency-distilled student")
    done = run_cli("train", "diffusion", "--teacher", "x", "--data", sound_manifest, "--out", tmp_path / "d")
    assert_clean_error(done, "--teacher is for `mka train distill`")
    done = distill(tmp_path, sound_manifest, tmp_path / "e", 1, "--set", "model.guidance_min=6")
    assert_clean_error(done, "guidance_min")


# -- exact resume after kill -9 ---------------------------------------------------------------

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MKA_LOAD_PLUGINS": ""}


def argv(teacher: Path, manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mka_core.cli.main", "train", "distill", "--teacher", str(teacher), "--data",
            str(manifest), "--steps", "6", "--set", "run.checkpoint_every=2", *SMALL, "--out", str(out), *extra]


def test_kill_9_and_resume_matches_an_uninterrupted_run(tmp_path, teacher_dir, sound_manifest):
    from tests.training.test_resume import wait_for

    straight = tmp_path / "straight"
    done = subprocess.run(argv(teacher_dir, sound_manifest, straight), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(argv(teacher_dir, sound_manifest, crashed), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (crashed / "checkpoints" / "step-00000002" / "state.json").is_file(), proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest_checkpoint(crashed).name in ("step-00000002", "step-00000004"), "killed after the run had finished"
    resumed = subprocess.run(argv(teacher_dir, sound_manifest, crashed, "--resume"), env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    (step_a, a), (step_b, b) = load_checkpoint(latest_checkpoint(straight)), load_checkpoint(latest_checkpoint(crashed))
    assert step_a == step_b == 6
    for module in ("unet", "target_unet"):  # the student and the target network
        for key, tensor in a["modules"][module].items():
            assert torch.allclose(tensor, b["modules"][module][key], atol=1e-6, rtol=0), (module, key)
    for key, tensor in a["ema"]["unet"]["weights"].items():
        assert torch.allclose(tensor, b["ema"]["unet"]["weights"][key], atol=1e-6, rtol=0), ("ema", key)
    # The target network is a moving average of the student, not a copy of it.
    assert not torch.equal(a["modules"]["unet"]["guidance_embed.weight"], a["modules"]["target_unet"]["guidance_embed.weight"])


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_distils_with_two_processes(tmp_path, teacher_dir, sound_manifest):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    run = tmp_path / "ddp"
    command = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "mka_core.cli.main", "train", "distill",
               "--teacher", str(teacher_dir), "--data", str(sound_manifest), "--steps", "2",
               *SMALL, "--out", str(run)]
    done = subprocess.run(command, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    step, state = load_checkpoint(latest_checkpoint(run))
    assert step == 2 and set(state["modules"]) == {"unet", "target_unet"}
    assert json.loads((run / "export" / "model_index.json").read_text())["pipeline"]["defaults"]["sampler"] == "consistency"


def test_a_context_free_inpainting_teacher_distils(tmp_path, sound_manifest):
    """A model that takes no condition (the reference inpainting model's kind): no captions are encoded."""
    from mka_core.models.unet import UNet, UNetConfig
    from mka_core.pipeline import Pipeline
    from mka_core.presets import build_pipeline
    from mka_plugins.tasks.inpaint import make_inpainting_pipeline

    base = build_pipeline("tiny", cond="unconditional", seed=0)
    torch.manual_seed(0)
    unet = UNet(UNetConfig.model_validate({**base.unet.config.model_dump(), "context_dim": None}))
    free = Pipeline(base.config, base.conditioner, base.vae, unet, base.vocoder, device="cpu")
    teacher = tmp_path / "context-free"
    make_inpainting_pipeline(free).save_pretrained(teacher)
    run = tmp_path / "run"
    done = distill(teacher, sound_manifest, run, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    student = Pipeline.from_pretrained(run / "export", device="cpu")
    assert student.unet.config.context_dim is None and student.unet.config.in_channels == 9
    init = sorted((sound_manifest.parent / "audio").glob("noise0.wav"))[0]
    result = student(None, init_audio=str(init), mask="0.2-0.6", duration=1.0, seed=1)
    assert result.metadata[0]["sampler"] == "consistency" and torch.isfinite(result.waveforms).all()
