"""The VAE contract: what the pipeline, ``mka info``, the tasks and the trainers read from a VAE.

A VAE maps log-mels ``[B, 1, n_mels, frames]`` to latents ``[B, C, n_mels / f_bins, frames / f_frames]``
and back. Everything else in mka asks the VAE for its geometry instead of restating it:

* :attr:`LatentAutoencoder.latent_channels` - ``C``, the U-Net's input and output channels;
* :attr:`LatentAutoencoder.downsampling` - ``(f_bins, f_frames)``: mel bins and mel frames per
  latent row and column (8 x 8 for the released AutoencoderKL);
* :meth:`~LatentAutoencoder.encode` / :meth:`~LatentAutoencoder.decode` - mel to posterior over
  *unscaled* latents, and unscaled latents to mel;
* :attr:`~LatentAutoencoder.scale_factor_value` - the diffusion model sees ``z * scale_factor``;
  :meth:`~LatentAutoencoder.encode_latents` / :meth:`~LatentAutoencoder.decode_latents` apply it.

:class:`VAEGeometry` is the same geometry without a module, read from a config alone
(``VAEClass.geometry(config)``), which is how ``mka info`` sizes a preset without building it.

A plugin provides another VAE by subclassing :class:`LatentAutoencoder` (``name``,
``config_class``, the members above) and registering the class with the ``register_vaes`` hook;
a pipeline folder records the VAE's registered name and loads it through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import InputError

#: The registered name of mka's own VAE; pipeline folders that record no VAE name use it.
DEFAULT_VAE = "autoencoder-kl"


class Posterior(Protocol):
    """What :meth:`LatentAutoencoder.encode` returns: a distribution over unscaled latents."""

    mean: torch.Tensor
    logvar: torch.Tensor
    std: torch.Tensor

    def sample(self, generator: Any = None) -> torch.Tensor: ...

    def mode(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class VAEGeometry:
    """Latent channels and downsampling factors ``(mel bins, frames)`` of a VAE."""

    latent_channels: int
    downsampling: tuple[int, int]

    @property
    def frame_factor(self) -> int:
        """Mel frames per latent column."""
        return self.downsampling[1]

    def latent_shape(self, n_mels: int, frames: int) -> tuple[int, int, int]:
        """``(C, n_mels / f_bins, frames / f_frames)``; both sizes must divide evenly."""
        bins, time = self.downsampling
        if n_mels % bins or frames % time:
            raise InputError(
                f"{n_mels} mel bins x {frames} frames does not divide into this VAE's {bins} x {time} latent cells; "
                "pad or crop the mel."
            )
        return (self.latent_channels, n_mels // bins, frames // time)


class LatentAutoencoder(nn.Module):
    """Base class of every VAE (mka's AutoencoderKL, or a plugin's)."""

    #: Registered name (recorded in pipeline folders as the VAE's ``plugin``).
    name: ClassVar[str]
    #: Pydantic config model; ``config.json`` holds its fields and the class is built as ``cls(config)``.
    config_class: ClassVar[type[StrictModel]]
    #: One line for ``mka plugins``.
    summary: ClassVar[str] = ""

    def __init__(self, config: StrictModel) -> None:
        super().__init__()
        self.config = config

    # -- geometry --------------------------------------------------------------------------------
    @classmethod
    def geometry(cls, config: StrictModel) -> VAEGeometry:  # pragma: no cover - abstract
        """The geometry a module built from ``config`` has (no module is built)."""
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        return self.geometry(self.config).latent_channels

    @property
    def downsampling(self) -> tuple[int, int]:
        """``(mel bins, mel frames)`` per latent cell."""
        return self.geometry(self.config).downsampling

    def latent_shape(self, n_mels: int, frames: int) -> tuple[int, int, int]:
        return self.geometry(self.config).latent_shape(n_mels, frames)

    # -- the scale the diffusion model sees --------------------------------------------------------
    @property
    def scale_factor_value(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_scale_factor(self, value: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- encode / decode ---------------------------------------------------------------------------
    def encode(self, mel: torch.Tensor) -> Posterior:  # pragma: no cover - abstract
        """Mel ``[B, 1, n_mels, frames]`` -> posterior over unscaled latents."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, tile: int | None = None, overlap: int = 8) -> torch.Tensor:  # pragma: no cover
        """Unscaled latents -> mel. ``tile``: decode at most that many latent columns at a time (may be ignored)."""
        raise NotImplementedError

    def encode_latents(self, mel: torch.Tensor, generator: Any = None, sample: bool = True) -> torch.Tensor:
        """Mel -> scaled latents ``z * scale_factor`` (a posterior sample, or its mean with ``sample=False``)."""
        posterior = self.encode(mel)
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.scale_factor_value

    def decode_latents(self, z: torch.Tensor, tile: int | None = None, overlap: int = 8) -> torch.Tensor:
        """Scaled latents -> mel."""
        return self.decode(z * (1.0 / self.scale_factor_value), tile=tile, overlap=overlap)


def vae_class(name: str | None) -> type[LatentAutoencoder]:
    """The registered VAE class called ``name`` (None: mka's own AutoencoderKL)."""
    from mka_core.plugins import manager

    return manager.get("vae", name or DEFAULT_VAE)


def vae_name(vae: nn.Module) -> str:
    """The registered name of a VAE instance (its class's ``name``)."""
    return str(getattr(type(vae), "name", DEFAULT_VAE))


__all__ = ["DEFAULT_VAE", "LatentAutoencoder", "Posterior", "VAEGeometry", "vae_class", "vae_name"]
