"""The U-Net under ``torch.compile``, with CUDA graphs on a GPU and an on-disk compile cache.

A sampler calls the U-Net with the same shapes at every step, which is what a compiled,
graph-captured forward wants: on CUDA, ``mode="reduce-overhead"`` replays one captured CUDA
graph per step instead of launching hundreds of kernels. Compiling costs tens of seconds the
first time; inductor's FX-graph and autotuning caches are kept under ``$MKA_HOME/cache/inductor``
(unless ``TORCHINDUCTOR_CACHE_DIR`` is set), so later processes warm up from disk in seconds.

The host-side checks of :meth:`UNet.forward` (input validation, "is every context token
real?") run once per new context outside the compiled graph, so the graph has no breaks.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from mka_core.models.unet import UNet


def inductor_cache_dir() -> str:
    """Where compiled kernels are cached across processes (created on first use)."""
    configured = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if configured:
        return configured
    from mka_core.weights import mka_home

    path = mka_home() / "cache" / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return str(path)


def _body(unet: UNet, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None,
          context_mask: torch.Tensor | None, guidance: torch.Tensor | None = None) -> torch.Tensor:
    # The graph proper: UNet.forward minus its data-dependent checks (done by the caller).
    return unet.forward_unchecked(x, t, context, context_mask, guidance)


class CompiledUNet:
    """Callable like the U-Net; build with :func:`compile_unet`."""

    def __init__(self, unet: UNet, mode: str | None, dynamic: bool = False) -> None:
        inductor_cache_dir()
        self.unet = unet
        self.mode = mode
        self.cuda_graphs = mode == "reduce-overhead"
        self._fn = torch.compile(_body, mode=mode, dynamic=dynamic, fullgraph=True)
        self._mask_memo: tuple[Any, torch.Tensor | None] = (None, None)

    @property
    def config(self):
        return self.unet.config

    def _mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """``None`` when every token is real (one host sync per new mask, not per step)."""
        if mask is None:
            return None
        if self._mask_memo[0] is mask:
            return self._mask_memo[1]
        reduced = None if bool(mask.all()) else mask.to(dtype=torch.bool)
        self._mask_memo = (mask, reduced)
        return reduced

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                 context_mask: torch.Tensor | None = None, guidance: torch.Tensor | float | None = None) -> torch.Tensor:
        t = self.unet._check_inputs(x, t, context, context_mask)
        out = self._fn(self.unet, x, t, context, self._mask(context_mask), self.unet.guidance_input(guidance, x))
        # A CUDA-graph output lives in memory the next replay overwrites: hand out a copy.
        return out.clone() if self.cuda_graphs else out


def compile_unet(unet: UNet, mode: str | None = "auto", dynamic: bool = False) -> CompiledUNet:
    """``unet`` compiled for inference; ``mode="auto"`` uses CUDA graphs on CUDA, inductor's default elsewhere."""
    if mode == "auto":
        device = next(unet.parameters()).device
        mode = "reduce-overhead" if device.type == "cuda" else None
    return CompiledUNet(unet, mode, dynamic)
