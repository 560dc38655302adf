"""The sampler interface and what every sampler shares: SDEdit starts and mask blending.

A sampler turns noise into latents with a ``denoiser(x, t) -> eps`` (guidance already folded
in). The U-Net may run in bfloat16/float16; the sampler state and every coefficient stay in
float32/float64.

* ``strength`` + ``start_latents`` (SDEdit): only the timesteps at or below
  ``round(strength * N) - 1`` are run, starting from the start latents noised to the first of
  them with the sample's own noise. ``strength >= 1`` is plain generation from pure noise;
  a strength too small to reach any timestep returns the start latents unchanged.
* ``known_latents`` + ``known_mask`` (training-free inpainting; mask 1 = regenerate): after
  every step the known region is replaced by the known latents noised to the new level, and by
  the known latents themselves after the last step.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import torch

from mka_core.diffusion.noise import randn
from mka_core.diffusion.schedule import NoiseSchedule
from mka_core.errors import InputError

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]


class Sampler:
    name: ClassVar[str]

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:  # pragma: no cover - abstract
        """Model-evaluation timesteps (DDPM indices), descending."""
        raise NotImplementedError

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:  # pragma: no cover
        """One update from timestep ``t`` to ``t_next`` (None = the end of sampling)."""
        raise NotImplementedError

    def final_alpha(self, schedule: NoiseSchedule) -> float:
        """abar of the level the last step lands on (1.0 = clean)."""
        return 1.0

    def sample(
        self,
        denoiser: Denoiser,
        x_T: torch.Tensor,
        *,
        schedule: NoiseSchedule,
        steps: int,
        strength: float | None = None,
        start_latents: torch.Tensor | None = None,
        known_latents: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        if steps < 1:
            raise InputError(f"The number of sampling steps must be at least 1, got {steps}.")
        timesteps = self.timesteps(schedule, steps)
        x = x_T.float()
        if strength is not None and start_latents is not None and strength < 1.0:
            if not 0.0 <= strength <= 1.0:
                raise InputError(f"Strength must be in (0, 1], got {strength}.")
            start = int(round(strength * schedule.num_train_steps)) - 1
            timesteps = [t for t in timesteps if t <= start] if start >= 0 else []
            if not timesteps:
                return start_latents.float().clone()
            x = schedule.add_noise(start_latents.float(), x_T.float(), torch.full((x.shape[0],), timesteps[0]))
        blend = known_latents is not None and known_mask is not None
        if blend:
            known = known_latents.float().to(x.device)
            keep = (1.0 - known_mask.float()).to(x.device)
            noise = randn(x.shape[1:], generators, x.device, batch_size=x.shape[0])
            x = x * (1 - keep) + keep * schedule.add_noise(known, noise, torch.full((x.shape[0],), timesteps[0]))
        state: dict = {}
        total = len(timesteps)
        for i, t in enumerate(timesteps):
            t_next = timesteps[i + 1] if i + 1 < total else None
            x = self.step(denoiser, x, t, t_next, schedule, generators, state)
            if blend:
                if t_next is None:
                    x = x * (1 - keep) + keep * known
                else:
                    noise = randn(x.shape[1:], generators, x.device, batch_size=x.shape[0])
                    x = x * (1 - keep) + keep * schedule.add_noise(known, noise, torch.full((x.shape[0],), t_next))
            if progress is not None:
                progress(i + 1, total)
        return x


def abar(schedule: NoiseSchedule, t: int | None, final: float) -> float:
    return final if t is None else float(schedule.alphas_cumprod64[t])
