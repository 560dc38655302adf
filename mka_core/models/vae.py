"""The spectrogram VAE (AutoencoderKL): log-mel ``[B, 1, 80, T]`` <-> latent ``[B, 4, 10, T/8]``.

State-dict keys equal the reference checkpoints' ``first_stage_model.*`` keys with that
prefix removed, plus one: ``scale_factor`` (a 0-d float32 buffer), which the reference keeps
at the top level of the Lightning checkpoint instead. Latents seen by the diffusion model are
``z * scale_factor``; training sets ``scale_factor = 1 / std`` of the first batch's latents.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.models.vae_blocks import Decoder, Encoder
from mka_core.models.vae_contract import DEFAULT_VAE, LatentAutoencoder, VAEGeometry

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


class VAEConfig(StrictModel):
    """Hyper-parameters of :class:`AutoencoderKL`. ``base`` is the released model."""

    in_channels: int = Field(1, ge=1)
    out_channels: int = Field(1, ge=1)
    ch: int = Field(128, ge=1, description="Width of the first level.")
    ch_mult: list[int] = Field(default_factory=lambda: [1, 2, 2, 4], min_length=1)
    num_res_blocks: int = Field(2, ge=1, description="ResnetBlocks per encoder level (decoder levels get one more).")
    z_channels: int = Field(4, ge=1)
    embed_dim: int = Field(4, ge=1, description="Latent channels after quant_conv (mean/logvar each).")
    resolution: int = Field(624, ge=1, description="Nominal time resolution; only used to place attention.")
    attn_resolutions: list[int] = Field(
        default_factory=lambda: [156, 78],
        description="Self-attention at the levels whose time resolution resolution / 2**level is listed.",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm_groups: int = Field(32, ge=1)
    scale_factor: float = Field(
        1.0,
        gt=0.0,
        description=(
            "Latents are multiplied by this before diffusion (and divided after). Set at training from "
            "1/std of the first batch's latents; also stored as the 'scale_factor' buffer with the weights."
        ),
    )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def attention_levels(self) -> set[int]:
        """Levels with self-attention: where the time resolution equals one of ``attn_resolutions``."""
        return {lv for lv in range(len(self.ch_mult)) if self.resolution // 2**lv in self.attn_resolutions}

    @model_validator(mode="after")
    def _check(self) -> "VAEConfig":
        widths = {self.ch} | {self.ch * m for m in self.ch_mult}
        bad = sorted(w for w in widths if w % self.norm_groups)
        if bad:
            raise ValueError(f"norm_groups={self.norm_groups} does not divide the VAE widths {bad}; pick a divisor.")
        return self

    @classmethod
    def preset(cls, name: str) -> "VAEConfig":
        """``base``: the released VAE (68.98 M parameters); ``tiny``: same layout, width 32."""
        if name == "base":
            return cls()
        if name == "tiny":
            return cls(ch=32, norm_groups=16)
        raise InputError(f"Unknown VAE preset '{name}'; valid presets are 'base' and 'tiny'.")


def _normal_like(ref: torch.Tensor, generator: GeneratorArg) -> torch.Tensor:
    """Standard normal noise shaped like ``ref``, drawn where the generator lives, then moved to ``ref``.

    No generator: the CPU global RNG (as the reference does), so a seed gives the same noise
    on every device. A list gives one generator per batch element.
    """
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(ref.shape, generator=generator, device=device, dtype=torch.float32)
    else:
        gens = list(generator)
        if len(gens) != ref.shape[0]:
            raise InputError(f"Got {len(gens)} generators for a batch of {ref.shape[0]}; pass one per sample.")
        noise = torch.stack(
            [torch.randn(ref.shape[1:], generator=g, device=g.device, dtype=torch.float32).cpu() for g in gens]
        )
    return noise.to(device=ref.device, dtype=ref.dtype)


class DiagonalGaussian:
    """The VAE posterior: per-element normal with ``mean`` and ``logvar`` (clamped to [-30, 20])."""

    def __init__(self, moments: torch.Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: GeneratorArg = None) -> torch.Tensor:
        return self.mean + self.std * _normal_like(self.mean, generator)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to the standard normal, summed over C, H, W: shape ``[B]``."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=[1, 2, 3])


class AutoencoderKL(LatentAutoencoder):
    """Spectrogram VAE. Input layout ``[B, 1, n_mels, frames]`` (height = mel bins, width = time).

    mka's own implementation of the VAE contract (:mod:`mka_core.models.vae_contract`),
    registered as ``autoencoder-kl`` through the ``register_vaes`` hook.
    """

    name = DEFAULT_VAE
    summary = "The released spectrogram VAE (AutoencoderKL): 4 latent channels, 8 x 8 downsampling in the base preset."
    config_class = VAEConfig

    @classmethod
    def geometry(cls, config: VAEConfig) -> VAEGeometry:
        factor = config.downsample_factor  # the encoder halves both axes once per level after the first
        return VAEGeometry(latent_channels=config.embed_dim, downsampling=(factor, factor))

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        c = config
        common = dict(
            ch=c.ch, ch_mult=c.ch_mult, num_res_blocks=c.num_res_blocks, z_channels=c.z_channels,
            attention_levels=c.attention_levels(), dropout=c.dropout, norm_groups=c.norm_groups,
        )
        self.encoder = Encoder(in_channels=c.in_channels, **common)
        self.decoder = Decoder(out_channels=c.out_channels, **common)
        self.quant_conv = nn.Conv2d(2 * c.z_channels, 2 * c.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)
        self.register_buffer("scale_factor", torch.tensor(float(c.scale_factor), dtype=torch.float32))

    # -- scale factor ------------------------------------------------------------------------
    @property
    def scale_factor_value(self) -> float:
        """The latent scale as a Python float (read from the buffer, which the weights carry)."""
        if self.scale_factor.is_meta:
            return float(self.config.scale_factor)
        return float(self.scale_factor)

    def set_scale_factor(self, value: float) -> None:
        """Set the latent scale in both the buffer and the config (e.g. ``1 / latents.std()``)."""
        value = float(value)
        if not value > 0.0 or value == float("inf"):
            raise InputError(f"The VAE scale factor must be a positive finite number, got {value}.")
        self.config.scale_factor = value
        with torch.no_grad():
            self.scale_factor.fill_(value)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "AutoencoderKL":
        # Keep the scale in float32 when the module is cast to half/bfloat16: it multiplies whole
        # latents, so a rounded factor would bias every latent.
        before = self.scale_factor
        super()._apply(fn, recurse)
        after = self._buffers["scale_factor"]
        if after is not None and after.dtype != torch.float32:
            self._buffers["scale_factor"] = before.to(device=after.device, dtype=torch.float32)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "scale_factor" in state_dict and not self.scale_factor.is_meta:
            self.config.scale_factor = float(self.scale_factor)  # the weights' value wins; keep the config in step

    # -- shape checks ------------------------------------------------------------------------
    def _check_mel(self, mel: torch.Tensor) -> None:
        c, f = self.config, self.config.downsample_factor
        if mel.ndim != 4 or mel.shape[1] != c.in_channels:
            raise InputError(f"The VAE expects mels [B, {c.in_channels}, n_mels, frames], got {list(mel.shape)}.")
        if mel.shape[2] % f or mel.shape[3] % f:
            raise InputError(
                f"Mel bins and frames must be multiples of {f} for this VAE, got {mel.shape[2]}x{mel.shape[3]}; "
                "pad or crop the mel."
            )

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.ndim != 4 or z.shape[1] != self.config.embed_dim:
            raise InputError(f"The VAE decoder expects latents [B, {self.config.embed_dim}, h, w], got {list(z.shape)}.")

    # -- encode / decode ---------------------------------------------------------------------
    #: Runtime layout of the feature maps (not part of the config): ``"auto"`` = channels-last on
    #: CPU and CUDA, where the convolutions and GroupNorms take it without reordering and the
    #: attention tokens are views of it; ``"contiguous"`` = NCHW. Outputs are NCHW either way.
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"

    def _run(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        fmt = self.memory_format
        if fmt == "channels_last" or (fmt == "auto" and x.device.type in ("cpu", "cuda")):
            x = x.contiguous(memory_format=torch.channels_last)
        return net(x).contiguous()

    def encode(self, mel: torch.Tensor) -> DiagonalGaussian:
        """Mel ``[B, 1, H, T]`` -> posterior over unscaled latents ``[B, embed_dim, H/8, T/8]``."""
        self._check_mel(mel)
        return DiagonalGaussian(self.quant_conv(self._run(self.encoder, mel)))

    def decode(self, z: torch.Tensor, tile: int | None = None, overlap: int = 8) -> torch.Tensor:
        """Unscaled latents ``[B, embed_dim, h, w]`` -> mel ``[B, out_channels, 8h, 8w]``.

        ``tile``: decode at most ``tile`` latent columns at a time (windows overlapping by
        ``overlap`` columns, blended with linear cross-fades) to bound memory on long clips.
        The decoder's self-attention is global in time, so a tiled decode is close to, not
        equal to, the whole-clip decode; ``None`` (default) decodes in one pass.
        """
        self._check_latent(z)
        if tile is None or z.shape[-1] <= tile:
            return self._run(self.decoder, self.post_quant_conv(z))
        return self._decode_tiled(z, tile, overlap)

    def _decode_tiled(self, z: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
        if not 0 <= overlap < tile:
            raise InputError(f"Decoding tile overlap must be in [0, tile), got overlap={overlap} with tile={tile}.")
        f, width = self.config.downsample_factor, z.shape[-1]
        starts = list(range(0, width - tile, tile - overlap)) + [width - tile]
        out: torch.Tensor | None = None
        total = torch.zeros(width * f, device=z.device, dtype=torch.float32)
        for start in starts:
            piece = self._run(self.decoder, self.post_quant_conv(z[..., start : start + tile])).float()
            weight = torch.ones(tile * f, device=z.device)
            ramp = torch.linspace(0.0, 1.0, overlap * f + 2, device=z.device)[1:-1]
            if start > 0 and overlap:
                weight[: overlap * f] = ramp
            if start + tile < width and overlap:
                weight[-overlap * f :] = ramp.flip(0)
            if out is None:
                out = torch.zeros(*piece.shape[:-1], width * f, device=z.device, dtype=torch.float32)
            out[..., start * f : (start + tile) * f] += piece * weight
            total[start * f : (start + tile) * f] += weight
        assert out is not None
        return (out / total).to(z.dtype)

    def forward(
        self, mel: torch.Tensor, sample_posterior: bool = True, generator: GeneratorArg = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Training pass: reconstruction and posterior."""
        posterior = self.encode(mel)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    # -- the diffusion model's view ---------------------------------------------------------
    def encode_latents(self, mel: torch.Tensor, generator: GeneratorArg = None, sample: bool = True) -> torch.Tensor:
        """Mel -> scaled latents ``z * scale_factor`` (a posterior sample, as in training, or its mean)."""
        posterior = self.encode(mel)
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.scale_factor.to(z.dtype)

    def decode_latents(self, z: torch.Tensor, tile: int | None = None, overlap: int = 8) -> torch.Tensor:
        """Scaled latents -> mel: ``decode(z * (1 / scale_factor))`` (the reference multiplies by the reciprocal)."""
        return self.decode(z * (1.0 / self.scale_factor).to(z.dtype), tile=tile, overlap=overlap)
