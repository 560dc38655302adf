"""Classifier-free guidance at inference, and guidance dropout for training.

A condition is anything with ``embeds [B, T, D]`` and ``mask [B, T]`` (True = real token),
such as :class:`mka_core.conditioning.Condition`.

At inference the null and the real condition run in ONE batched forward on ``[null; cond]``
(the shorter token sequence padded with masked zeros) and
``eps = eps_null + s * (eps_cond - eps_null)`` in float32. With ``s == 1`` or no null
condition one plain forward suffices. The null condition is expanded to the batch and joined
to the condition once, when the denoiser is built, not at every step.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from mka_core.conditioning import Condition

#: ``model(x, t, context, context_mask) -> eps``.
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def _expand(condition: Any, batch: int, like: Any) -> Condition:
    """``condition`` broadcast to ``batch`` samples, on ``like``'s device and dtype."""
    embeds, mask = condition.embeds, condition.mask
    if embeds.shape[0] != batch:
        if embeds.shape[0] != 1:
            raise ValueError(f"a null condition of batch {embeds.shape[0]} cannot serve a batch of {batch}")
        embeds, mask = embeds.expand(batch, -1, -1), mask.expand(batch, -1)
    return Condition(embeds.to(like.embeds.device, like.embeds.dtype), mask.to(like.embeds.device))


class GuidedDenoiser:
    """``denoiser(x, t) -> eps`` (float32) with classifier-free guidance folded in.

    ``condition`` None runs the model on the null condition alone (unconditional sampling);
    both None runs it without context. ``calls`` counts model forwards.
    """

    def __init__(self, model: ModelFn, condition: Any | None, null_condition: Any | None, scale: float) -> None:
        self.model = model
        self.scale = float(scale)
        self.guided = condition is not None and null_condition is not None and self.scale != 1.0
        self.calls = 0
        self.context: torch.Tensor | None = None
        self.context_mask: torch.Tensor | None = None
        self._null_only = condition is None and null_condition is not None
        if self.guided:
            both = Condition.cat([_expand(null_condition, condition.embeds.shape[0], condition), condition])
            self.context, self.context_mask = both.embeds, both.mask
        elif condition is not None:
            self.context, self.context_mask = condition.embeds, condition.mask
        elif self._null_only:
            self._null = null_condition

    def _context_for(self, batch: int) -> None:
        if self._null_only and (self.context is None or self.context.shape[0] != batch):
            null = _expand(self._null, batch, self._null)
            self.context, self.context_mask = null.embeds, null.mask
        expected = self.context.shape[0] // (2 if self.guided else 1) if self.context is not None else batch
        if expected != batch:
            raise ValueError(f"the condition has batch {expected} but the latents have batch {batch}")

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        self._context_for(batch)
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(batch)
        self.calls += 1
        if not self.guided:
            return self.model(x, t, self.context, self.context_mask).float()
        eps = self.model(torch.cat([x, x]), torch.cat([t, t]), self.context, self.context_mask).float()
        eps_null, eps_cond = eps.chunk(2)
        return eps_null + self.scale * (eps_cond - eps_null)


def guidance_dropout(condition: Any, null_condition: Any, p: float = 0.1,
                     generator: torch.Generator | None = None) -> Condition:
    """Training: replace each sample's condition by the null condition with probability ``p``.

    The draw is made on the CPU (``generator``, or the global one), so it does not depend on
    the device. Token counts that differ are padded with masked zeros.
    """
    batch = condition.embeds.shape[0]
    drop = torch.rand(batch, generator=generator) < p
    cond = Condition(condition.embeds, condition.mask)
    if not drop.any():
        return cond
    both = Condition.cat([cond, _expand(null_condition, batch, condition)])
    keep = (~drop).to(both.embeds.device)
    embeds = torch.where(keep[:, None, None], both.embeds[:batch], both.embeds[batch:])
    mask = torch.where(keep[:, None], both.mask[:batch], both.mask[batch:])
    return Condition(embeds, mask)
