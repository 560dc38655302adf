"""Classifier-free guidance, and guidance dropout for training.

At inference the conditional and the null condition run in ONE batched forward
(``[null; cond]``) and ``eps = eps_null + s * (eps_cond - eps_null)``; with ``s == 1`` or no
null condition a single forward suffices. The null condition is expanded once, not re-encoded
at every step.
"""

from __future__ import annotations

from typing import Callable

import torch

from mka_core.conditioning import Condition

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


class GuidedDenoiser:
    """``denoiser(x, t) -> eps`` with classifier-free guidance folded in."""

    def __init__(self, model: ModelFn, condition: Condition | None, null_condition: Condition | None, scale: float) -> None:
        self.model = model
        self.scale = float(scale)
        self.guided = condition is not None and null_condition is not None and self.scale != 1.0
        if self.guided:
            batch = condition.batch_size
            both = Condition.cat([null_condition.expand(batch), condition])
            self.context, self.context_mask = both.embeds, both.mask
        elif condition is not None:
            self.context, self.context_mask = condition.embeds, condition.mask
        else:
            self.context = self.context_mask = None
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if not self.guided:
            return self.model(x, t, self.context, self.context_mask).float()
        eps = self.model(torch.cat([x, x]), torch.cat([t, t]), self.context, self.context_mask).float()
        eps_null, eps_cond = eps.chunk(2)
        return eps_null + self.scale * (eps_cond - eps_null)


def guidance_dropout(condition: Condition, null_condition: Condition, p: float,
                     generator: torch.Generator | None = None) -> Condition:
    """Replace each sample's condition by the null condition with probability ``p`` (training)."""
    batch = condition.batch_size
    drop = torch.rand(batch, generator=generator) < p
    if not drop.any():
        return condition
    null = null_condition.expand(batch).to(condition.embeds.device, condition.embeds.dtype)
    both = Condition.cat([condition, null])
    cond_part, null_part = both[:batch], both[batch:]
    keep = (~drop).to(condition.embeds.device)
    embeds = torch.where(keep[:, None, None], cond_part.embeds, null_part.embeds)
    mask = torch.where(keep[:, None], cond_part.mask, null_part.mask)
    return Condition(embeds, mask)
