"""Exponential moving average of a module's parameters (the weights that get exported)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after each optimiser step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so that early, mostly random
    weights are forgotten quickly. Buffers are copied, not averaged.
    """

    def __init__(self, module: nn.Module, decay: float = 0.9999) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        shadow_params = dict(self.shadow.named_parameters())
        for name, param in module.named_parameters():
            shadow_params[name].lerp_(param.detach().to(shadow_params[name].dtype), 1.0 - decay)
        shadow_buffers = dict(self.shadow.named_buffers())
        for name, buffer in module.named_buffers():
            shadow_buffers[name].copy_(buffer)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "weights": self.shadow.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.shadow.load_state_dict(state["weights"])
