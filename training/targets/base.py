"""The contract of a trainable target: what ``mka train NAME`` trains.

Built-in targets (vae, diffusion, inpaint, vocoder, conditioner) and plugins' targets are
the same kind of object, registered through the ``register_trainers`` hook. A target owns the
*model* (its modules, how to compute its losses, how to export it); the
:class:`~training.trainer.Trainer` owns the *training state* (optimisers, schedulers, EMA,
precision, checkpoints, resume, distribution, logging).

A minimal target::

    class MyTarget(TrainTarget):
        name = "my-module"
        recipe_class = MyRecipe            # a training.recipe.Recipe subclass

        def setup(self):                   # build modules and the dataset
            self.add_module("net", MyNet(), optimizer="main")
            self.train_data = MyDataset(...)

        def training_step(self, batch, generator):
            loss = ...
            yield "main", loss, {"loss": loss.item()}

        def export(self, out_dir):         # write something loadable, return its path
            ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from training.recipe import Recipe


@dataclass
class TrainContext:
    """What the trainer gives a target: where to run and where to write."""

    device: torch.device
    run_dir: Path
    rank: int = 0
    world: int = 1
    log: Any = print  # callable(str) for human-readable notes (rank 0 only prints)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class ModuleSlot:
    module: nn.Module
    optimizer: str | None  # None: frozen, kept in checkpoints only if `persistent`
    ema: bool = False
    lr_scale: float = 1.0
    wrapped: nn.Module | None = None  # the DDP wrapper when distributed
    persistent: bool = True
    parameters: list[nn.Parameter] | None = None  # a subset to train (default: all)


@dataclass
class StepOutput:
    optimizer: str
    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class TrainTarget:
    """Base class of trainable targets; subclass and register with ``register_trainers``."""

    name: str = ""
    summary: str = ""
    recipe_class: type[Recipe] = Recipe
    #: manifest rows need a non-empty caption (text-conditioned targets)
    needs_captions: bool = False
    #: the recipe must name a training manifest (data.train)
    needs_data: bool = True

    def __init__(self, recipe: Recipe, context: TrainContext) -> None:
        self.recipe = recipe
        self.context = context
        self.slots: dict[str, ModuleSlot] = {}
        self.train_data: Dataset | None = None
        self.valid_data: Dataset | None = None
        #: the optimiser step being computed (set by the trainer before each training_step)
        self.current_step = 0

    # -- for subclasses ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.context.device

    def add_module(self, name: str, module: nn.Module, *, optimizer: str | None = None, ema: bool = False,
                   lr_scale: float = 1.0, persistent: bool = True,
                   parameters: list[nn.Parameter] | None = None) -> nn.Module:
        """Declare a module. With ``optimizer`` it is trained by that optimiser (several
        modules may share one); with ``ema`` its moving average is kept and exported."""
        module.to(self.device)
        self.slots[name] = ModuleSlot(module, optimizer, ema, lr_scale, persistent=persistent, parameters=parameters)
        return module

    def net(self, name: str) -> nn.Module:
        """The module to call in a training forward (the DDP wrapper when distributed)."""
        slot = self.slots[name]
        return slot.wrapped if slot.wrapped is not None else slot.module

    def first_batch(self) -> Any:
        """The run's first training batch (the same one on every call, also after a resume)."""
        from training.data.dataset import StreamSampler

        sampler = StreamSampler(len(self.train_data), self.recipe.run.batch_size, seed=self.recipe.run.seed,
                                rank=self.context.rank, world=self.context.world)
        keys = next(iter(sampler))
        return self.collate([self.train_data[key] for key in keys])

    def raw(self, name: str) -> nn.Module:
        """The bare module (for forwards whose gradients are not wanted, e.g. a GAN's D in G's phase)."""
        return self.slots[name].module

    # -- the contract --------------------------------------------------------------------------
    def setup(self) -> None:
        """Build modules (``add_module``) and datasets (``train_data``, ``valid_data``)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        from training.data.dataset import collate

        return collate(items)

    def training_step(self, batch: Any, generator: torch.Generator) -> Iterator[StepOutput | tuple]:
        """Yield ``(optimizer name, loss, logs)`` once per optimiser, in the order they step.

        The trainer back-propagates each loss into that optimiser's parameters only, then
        (at the end of the accumulation window) clips and steps it, before resuming the
        generator: a GAN yields its generator loss, then computes and yields the
        discriminator loss. Draw all randomness from ``generator`` (seeded per step), so
        resumed runs match uninterrupted ones.
        """
        raise NotImplementedError

    @torch.no_grad()
    def validation_step(self, batch: Any, generator: torch.Generator) -> dict[str, float]:
        """Losses on a validation batch (no gradients); default: none."""
        return {}

    def on_first_batch(self, batch: Any) -> None:
        """Called once before the first step of a fresh run (e.g. the VAE's scale factor)."""

    def after_optimizer_step(self, optimizer: str, step: int) -> None:
        """Called after each optimiser step."""

    def extra_state(self) -> dict[str, Any]:
        """State beyond module weights that must survive a resume (tensors and plain values)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def export(self, out_dir: Path) -> Path:
        """Write the trained model (with EMA weights swapped in by the trainer) where users load it."""
        raise NotImplementedError

    def render_samples(self, out_dir: Path, step: int) -> None:
        """Optionally write a few audio samples and mel PNGs of the current model."""
