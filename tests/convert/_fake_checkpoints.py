"""Checkpoints in the exact layouts of the released files, with made-up values.

The key names, shapes and order come from ``tests/data/reference/*.layout.json`` (what the
reference classes save). Values: every tensor gets its own slice of one shared pool of
normal noise (so two tensors of the same shape differ and a swapped mapping shows), scaled
like a trained network (``1/sqrt(fan_in)`` for weights, gains near 1 for normalisation) so
activations keep a sane size through the full-size networks. The schedule buffers, the scale
factor, ``position_ids`` and the anti-aliasing filters get their real values.

Float tensors are stored as float16 (half the bytes to write and read); the conversion
upcasts. Filling the 340 M values of maa1 this way takes about a second.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

LAYOUTS = Path(__file__).resolve().parents[1] / "data" / "reference"
POOL_SIZE = (1 << 24) + 7


def layout(name: str) -> dict[str, Any]:
    return json.loads((LAYOUTS / f"{name}.layout.json").read_text())


class NoisePool:
    """Slices of one pool of N(0, 1) values; the slice of a key depends on the key only."""

    def __init__(self, seed: int = 0) -> None:
        self.pool = torch.randn(POOL_SIZE, generator=torch.Generator().manual_seed(seed))

    def take(self, key: str, numel: int) -> torch.Tensor:
        offset = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % POOL_SIZE
        if offset + numel <= POOL_SIZE:
            return self.pool[offset: offset + numel]
        reps = math.ceil((offset + numel) / POOL_SIZE)
        return self.pool.repeat(reps)[offset: offset + numel]


def schedule_buffers(start: float, end: float, n: int = 1000) -> dict[str, torch.Tensor]:
    """The 12 DDPM buffers as LatentDiffusion registers them (float64 math, float32 storage)."""
    betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    post_var = betas * (1 - prev) / (1 - abar)
    values = {
        "betas": betas, "alphas_cumprod": abar, "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": abar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - abar).log(), "sqrt_recip_alphas_cumprod": (1 / abar).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / abar - 1).sqrt(), "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1 - abar),
        "posterior_mean_coef2": (1 - prev) * alphas.sqrt() / (1 - abar),
    }
    return {k: v.float() for k, v in values.items()}


def kaiser_filter() -> torch.Tensor:
    from tests.core._vocoder_reference import kaiser_sinc_direct

    return kaiser_sinc_direct()


def value_for(pool: NoisePool, key: str, shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    numel = math.prod(shape)
    noise = pool.take(key, numel).reshape(shape)
    last = key.rsplit(".", 1)[-1]
    if last == "weight_g":
        out = 0.5 + 0.25 * noise.abs()  # weight-norm gain: the norm of each output filter
    elif last == "weight_v":
        out = noise  # direction only; its norm is divided out
    elif len(shape) >= 2:
        out = noise / math.sqrt(max(numel // shape[0], 1))
    elif len(shape) == 0:
        out = torch.tensor(4.6052)  # logit_scale = log(100)
    elif last == "weight":
        out = 1.0 + 0.1 * noise  # normalisation gains
    elif last in ("alpha", "beta"):
        out = 0.2 * noise  # log-scale snake parameters
    else:
        out = 0.02 * noise
    return out.to(dtype)


def fake_state(name: str, pool: NoisePool, *, dtype: torch.dtype = torch.float16, skip_prefix: str | None = None,
               schedule: tuple[float, float] | None = None, scale_factor: float = 0.8,
               position_ids: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of layout ``name`` in file order, with made-up values."""
    spec = layout(name)
    tensors: dict[str, list] = spec["tensors"]
    sched = schedule_buffers(*schedule) if schedule else {}
    state: dict[str, torch.Tensor] = {}
    for key, (shape, kind) in tensors.items():
        if skip_prefix and key.startswith(skip_prefix):
            continue
        if key in sched:
            state[key] = sched[key]
        elif key == "scale_factor":
            state[key] = torch.tensor(scale_factor, dtype=torch.float32)
        elif key.endswith(".filter"):
            state[key] = kaiser_filter()
        else:
            state[key] = value_for(pool, key, shape, dtype)
        if key.endswith("embeddings.token_type_embeddings.weight") and position_ids:
            # transformers <= 4.30 saved BertEmbeddings.position_ids right after its embeddings.
            ids_key = key.replace("token_type_embeddings.weight", "position_ids")
            state[ids_key] = torch.arange(512, dtype=torch.int64)[None]
    return state


def lightning(state: dict[str, torch.Tensor], **extra: Any) -> dict[str, Any]:
    """A Lightning-style checkpoint dict around ``state``."""
    return {"epoch": 85, "global_step": 123456, "pytorch-lightning_version": "1.7.7", "state_dict": state, **extra}


BIGVGAN_ARGS = """resblock: '1'
num_gpus: 0
batch_size: 64
num_mels: 80
learning_rate: 0.0001
adam_b1: 0.8
adam_b2: 0.99
lr_decay: 0.999
seed: 1234
upsample_rates: [4, 4, 2, 2, 2, 2]
upsample_kernel_sizes: [8, 8, 4, 4, 4, 4]
upsample_initial_channel: {width}
resblock_kernel_sizes: [3, 7, 11]
resblock_dilation_sizes:
- [1, 3, 5]
- [1, 3, 5]
- [1, 3, 5]
activation: snakebeta
snake_logscale: true
resolutions:
- [1024, 120, 600]
- [2048, 240, 1200]
- [512, 50, 240]
mpd_reshapes: [2, 3, 5, 7, 11]
use_spectral_norm: false
discriminator_channel_mult: 1
num_workers: 4
dist_config:
  dist_backend: nccl
  dist_url: tcp://localhost:54341
  world_size: 1
"""


def write_bigvgan(folder: Path, pool: NoisePool, *, dtype: torch.dtype = torch.float16) -> Path:
    """``args.yml`` + ``best_netG.pt`` ({"generator": ...}) of the 16 kHz release layout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.yml").write_text(BIGVGAN_ARGS.format(width=1536))
    state = fake_state("bigvgan_16k", pool, dtype=dtype)
    torch.save({"generator": state}, folder / "best_netG.pt")
    return folder
