"""The trainer: runs any :class:`~training.targets.base.TrainTarget` from a recipe.

It owns the training state - optimisers, learning-rate schedules, EMA, precision, the data
stream position - and keeps it apart from the target's model. Checkpoints are written
atomically every ``run.checkpoint_every`` steps and when SIGINT/SIGTERM arrives; ``resume``
restores everything, including where the data stream was, and each step's randomness is
derived from (seed, step, micro-batch, rank), so a resumed run reproduces an uninterrupted one.

Under torchrun, rank 0 says once how many processes run on which backend; logged values are
averaged over all ranks; a checkpoint records its batch shape (processes x per-rank batch x
accumulation) and a resume with another shape warns. Progress goes to stderr: a live bar on a
terminal, plain lines otherwise (:mod:`training.progress`).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader

from mka_core.atomic import atomic_write
from mka_core.errors import InputError, NumericalError
from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.data.dataset import StreamSampler
from training.distributed import (DistInfo, all_reduce_logs, all_reduce_mean, barrier, describe_world,
                                  distributed_device, init_distributed)
from training.ema import EMA
from training.progress import TrainProgress
from training.recipe import Recipe, recipe_to_toml
from training.schedules import build_scheduler
from training.targets.base import StepOutput, TrainContext, TrainTarget

RECIPE_FILE = "recipe.toml"
METRICS_FILE = "metrics.jsonl"


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    # A fixed mixing of the counters; any injective-enough function would do.
    return (seed * 1_000_003 + step * 10_007 + micro * 101 + rank * 7 + 12345) % (2**63 - 1)


def autocast_context(device: torch.device, precision: str):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _StopRequest:
    """SIGINT/SIGTERM during training: finish the current step, checkpoint, stop."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    def __init__(self, target_class: type[TrainTarget], recipe: Recipe, run_dir: str | Path, *,
                 resume: bool | str | Path = False, log=None) -> None:
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.device = distributed_device(recipe.run.device)
        self.dist: DistInfo = init_distributed(self.device)
        self._log = log or print
        self.resume_from = self._resolve_resume(resume)
        if self.dist.enabled:  # once, from rank 0: how many processes, which backend, what a step sees
            self.log(describe_world(self.dist, self.device, recipe.run.batch_size, recipe.run.grad_accum))
        context = TrainContext(self.device, self.run_dir, self.dist.rank, self.dist.world, self.log)
        self.target = target_class(recipe, context)
        self.step = 0
        self.micro_batches = 0
        self.tb = None

    # -- helpers -------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            self._log(message)

    def _resolve_resume(self, resume: bool | str | Path) -> Path | None:
        existing = latest_checkpoint(self.run_dir)
        if resume is False or resume is None:
            if existing is not None:
                raise InputError(
                    f"The run folder {self.run_dir} already holds checkpoints; pass --resume to continue it "
                    "or choose a new --out."
                )
            return None
        if resume is True:
            if existing is None:
                raise InputError(f"There is no checkpoint in {self.run_dir} to resume from; start without --resume.")
            return existing
        path = Path(resume)
        if not path.is_dir():
            raise InputError(f"The checkpoint {path} does not exist.")
        return path

    def _build_optimizers(self) -> None:
        optim = self.recipe.optim
        groups: dict[str, list[dict]] = {}
        for slot in self.target.slots.values():
            if slot.optimizer is None:
                slot.module.requires_grad_(False)
                continue
            params = slot.parameters if slot.parameters is not None else [p for p in slot.module.parameters()]
            params = [p for p in params if p.requires_grad]
            if params:
                groups.setdefault(slot.optimizer, []).append({"params": params, "lr": optim.lr * slot.lr_scale})
        if not groups:
            raise InputError(f"The target '{self.target.name}' has nothing to train (no parameters with an optimiser).")
        self.optimizers = {
            name: torch.optim.AdamW(param_groups, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
            for name, param_groups in groups.items()
        }
        self.schedulers = {name: build_scheduler(opt, optim, self.recipe.run.max_steps) for name, opt in self.optimizers.items()}
        self.opt_params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in self.optimizers.items()}
        self.emas = {name: EMA(slot.module, getattr(self.recipe, "ema_decay", 0.9999))
                     for name, slot in self.target.slots.items() if slot.ema}

    def _wrap_distributed(self) -> None:
        if not self.dist.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        for slot in self.target.slots.values():
            if slot.optimizer is not None:
                ids = [self.device.index] if self.device.type == "cuda" else None
                slot.wrapped = DDP(slot.module, device_ids=ids,
                                   find_unused_parameters=getattr(self.target, "ddp_find_unused", False))

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "micro_batches": self.micro_batches,
            "modules": {n: s.module.state_dict() for n, s in self.target.slots.items() if s.persistent},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "ema": {n: e.state_dict() for n, e in self.emas.items()},
            "target": self.target.extra_state(),
            "torch_rng": torch.get_rng_state(),
            # What one step was made of, so a resume with another world size can say the batch changed.
            "batch_shape": self.batch_shape(),
        }

    def batch_shape(self) -> dict[str, int]:
        run = self.recipe.run
        return {"world_size": self.dist.world, "batch_size_per_rank": run.batch_size, "grad_accum": run.grad_accum}

    def check_batch_shape(self, state: dict[str, Any]) -> None:
        """Warn (rank 0) when the checkpoint's steps were made of other batches than this run's will be."""
        recorded = state.get("batch_shape")
        if not isinstance(recorded, dict) or not self.dist.is_main:
            return
        now = self.batch_shape()
        if all(recorded.get(k) == v for k, v in now.items()):
            return

        def total(shape: dict[str, Any]) -> int:
            return int(shape["world_size"]) * int(shape["batch_size_per_rank"]) * int(shape["grad_accum"])

        def describe(shape: dict[str, Any]) -> str:
            return (f"{shape['world_size']} process(es) x run.batch_size {shape['batch_size_per_rank']} "
                    f"x grad_accum {shape['grad_accum']} = {total(shape)} samples per step")

        if total(recorded) != total(now):
            consequence = ("so the effective batch changed (the learning rate is not rescaled, and the data order "
                           "differs from an uninterrupted run)")
        else:
            consequence = "the same effective batch, but the data order differs from an uninterrupted run"
        warnings.warn(
            f"the checkpoint {self.resume_from} was trained with {describe(recorded)}; this run uses {describe(now)}, "
            f"{consequence}",
            UserWarning, stacklevel=2,
        )

    def load_state(self, state: dict[str, Any]) -> None:
        from mka_core.weights import load_fitting_state

        for name, weights in state["modules"].items():
            # A checkpoint of another model shape (a changed recipe or --set model.*) is one
            # sentence; the optimizers and EMA below have the modules' shapes once these fit.
            load_fitting_state(self.target.slots[name].module, weights, self.resume_from or "the checkpoint",
                               what=f"this run's model ('{name}')",
                               fix="resume with the recipe and --set values the run was started with, "
                                   "or start a new --out folder")
        for name, opt_state in state["optimizers"].items():
            self.optimizers[name].load_state_dict(opt_state)
        for name, sched_state in state["schedulers"].items():
            self.schedulers[name].load_state_dict(sched_state)
        for name, ema_state in state["ema"].items():
            self.emas[name].load_state_dict(ema_state)
        self.target.load_extra_state(state.get("target", {}))
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.micro_batches = int(state["micro_batches"])

    def save(self) -> Path | None:
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.run_dir, self.step, self.state(), keep=self.recipe.run.keep_checkpoints)
        barrier(self.dist)
        return path

    # -- the loop ------------------------------------------------------------------------------
    def _data(self) -> Iterator[Any]:
        data = self.target.train_data
        if data is None or len(data) == 0:
            raise InputError("The training data is empty.")
        sampler = StreamSampler(len(data), self.recipe.run.batch_size, seed=self.recipe.run.seed,
                                rank=self.dist.rank, world=self.dist.world, start=self.micro_batches)
        loader = DataLoader(data, batch_sampler=sampler, collate_fn=self.target.collate,
                            num_workers=self.recipe.run.num_workers,
                            persistent_workers=self.recipe.run.num_workers > 0)
        return iter(loader)

    def _open_tensorboard(self) -> None:
        if not (self.dist.is_main and self.recipe.run.tensorboard):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])

    def _train_step(self, data: Iterator[Any], accum: int) -> dict[str, float]:
        run = self.recipe.run
        sums: dict[str, float] = {}
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        for micro in range(accum):
            batch = next(data)
            self.micro_batches += 1
            if self.step == 0 and micro == 0 and self.resume_from is None:
                self.target.on_first_batch(batch)
            seed = step_seed(run.seed, self.step, micro, self.dist.rank)
            torch.manual_seed(seed)  # module-internal randomness (dropout) follows the step too
            generator = torch.Generator().manual_seed(seed)
            self.target.current_step = self.step
            phases = self.target.training_step(batch, generator)
            while True:
                with autocast_context(self.device, run.precision):
                    try:
                        output = next(phases)
                    except StopIteration:
                        break
                if not isinstance(output, StepOutput):
                    output = StepOutput(*output)
                loss = output.loss
                if not torch.isfinite(loss):
                    raise NumericalError(
                        f"The {output.optimizer} loss became {loss.item()} at step {self.step}; lower optim.lr "
                        "or run.precision=float32, and resume from the last checkpoint."
                    )
                (loss.float() / accum).backward(inputs=self.opt_params[output.optimizer])
                for key, value in output.logs.items():
                    sums[key] = sums.get(key, 0.0) + float(value) / accum
                if micro == accum - 1:
                    self._step_optimizer(output.optimizer)
        return sums

    def _step_optimizer(self, name: str) -> None:
        if self.recipe.run.grad_clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.opt_params[name], self.recipe.run.grad_clip)
            self._last_grad_norm[name] = float(grad_norm)
        self.optimizers[name].step()
        self.schedulers[name].step()
        for slot_name, slot in self.target.slots.items():
            if slot.optimizer == name and slot_name in self.emas:
                self.emas[slot_name].update(slot.module)
        self.target.after_optimizer_step(name, self.step)

    def fit(self, *, export: bool = True) -> Path | None:
        run = self.recipe.run
        if self.target.needs_data and not self.recipe.data.train:
            raise InputError("No training manifest given; pass --data MANIFEST (see `mka data prepare`).")
        self.target.setup()
        self._build_optimizers()
        if self.dist.is_main:  # the run folder appears once the run can start
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.run_dir / RECIPE_FILE, "w") as handle:
                handle.write(recipe_to_toml(self.recipe))
        barrier(self.dist)
        if self.resume_from is not None:
            step, state = load_checkpoint(self.resume_from)
            self.load_state(state)
            self.log(f"resumed from {self.resume_from} at step {step}")
            self.check_batch_shape(state)
        self._wrap_distributed()
        for slot in self.target.slots.values():
            slot.module.train(slot.optimizer is not None)
        self._open_tensorboard()
        self._last_grad_norm: dict[str, float] = {}
        data = self._data()
        if self.step == 0 and run.validate_every:
            self.validate()  # the starting point, so every run shows how far it moved
        stopped = None
        started, window_start, window_steps = time.perf_counter(), time.perf_counter(), 0
        with _StopRequest() as stop, TrainProgress(self.dist.is_main, run.max_steps, self.step) as progress:
            while self.step < run.max_steps:
                # Each process's losses are those of its own shard: log their mean over all of them.
                logs = all_reduce_logs(self._train_step(data, run.grad_accum), self.dist, self.device)
                self.step += 1
                window_steps += 1
                progress.update(self.step, logs)
                if self.step % run.log_every == 0 or self.step == run.max_steps:
                    elapsed = time.perf_counter() - window_start
                    record = {"step": self.step, **logs,
                              **{f"lr/{n}": s.get_last_lr()[0] for n, s in self.schedulers.items()},
                              **{f"grad_norm/{n}": v for n, v in self._last_grad_norm.items()},
                              "samples_per_s": window_steps * run.batch_size * run.grad_accum * self.dist.world / max(elapsed, 1e-9),
                              "time": round(time.perf_counter() - started, 3)}
                    self._write_metrics(record)
                    window_start, window_steps = time.perf_counter(), 0
                if run.validate_every and self.step % run.validate_every == 0:
                    self.validate()
                if run.sample_every and self.step % run.sample_every == 0:
                    self.render_samples()
                if self.step % run.checkpoint_every == 0:
                    self.save()
                if stop.signal_name:
                    stopped = stop.signal_name
                    break
        if stopped:
            path = self.save()
            if self.dist.is_main:
                print(f"mka train: {stopped}: stopped at step {self.step}; checkpoint {path}; "
                      "continue with the same command and --resume.", file=sys.stderr)
            raise KeyboardInterrupt
        if latest_checkpoint(self.run_dir) is None or int(latest_checkpoint(self.run_dir).name.split("-")[-1]) != self.step:
            self.save()
        if not (run.validate_every and self.step % run.validate_every == 0):
            self.validate()
        if not (run.sample_every and self.step % run.sample_every == 0):
            self.render_samples()
        failed = getattr(self.target.train_data, "failed", {})
        if failed and self.dist.is_main:
            self.log(f"{len(failed)} row(s) failed to decode during training and were skipped: {', '.join(sorted(failed)[:5])}")
        out = self.export() if export else None
        if self.tb is not None:
            self.tb.close()
        return out

    # -- validation, samples, export ------------------------------------------------------------
    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Swap the EMA weights into the modules (for validation, samples and export)."""
        saved = {}
        for name, ema in self.emas.items():
            module = self.target.slots[name].module
            saved[name] = {k: v.detach().clone() for k, v in module.state_dict().items()}
            module.load_state_dict(ema.shadow.state_dict())
        try:
            yield
        finally:
            for name, weights in saved.items():
                self.target.slots[name].module.load_state_dict(weights)

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        modes = {n: s.module.training for n, s in self.target.slots.items()}
        for slot in self.target.slots.values():
            slot.module.eval()
        try:
            with self.ema_weights():
                yield
        finally:
            for name, slot in self.target.slots.items():
                slot.module.train(modes[name])

    def validate(self) -> dict[str, float]:
        data = self.target.valid_data
        if data is None or len(data) == 0:
            return {}
        sums: dict[str, float] = {}
        count = 0
        batch_size = self.recipe.run.batch_size
        indices = list(range(min(len(data), self.recipe.data.valid_limit)))
        with self.eval_mode(), torch.no_grad():
            for start in range(0, len(indices), batch_size):
                batch = self.target.collate([data[(i, i)] for i in indices[start:start + batch_size]])
                generator = torch.Generator().manual_seed(step_seed(self.recipe.run.seed, 0, start, 99))
                for key, value in self.target.validation_step(batch, generator).items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                count += 1
        result = {}
        for key, value in sums.items():
            mean = torch.tensor(value / max(count, 1))
            result[f"valid/{key}"] = float(all_reduce_mean(mean, self.dist))
        if result:
            self._write_metrics({"step": self.step, **result})
            self.log("validation " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
        return result

    def render_samples(self) -> None:
        if not self.dist.is_main:
            return
        folder = self.run_dir / "samples" / f"step-{self.step:08d}"
        with self.eval_mode(), torch.no_grad():
            self.target.render_samples(folder, self.step)

    def export(self, out_dir: str | Path | None = None) -> Path | None:
        out = Path(out_dir) if out_dir else self.run_dir / "export"
        path = None
        if self.dist.is_main:
            with self.eval_mode():
                path = self.target.export(out)
            self.log(f"exported {path}")
        barrier(self.dist)
        return path

