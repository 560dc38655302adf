"""The spectrogram VAE's losses (latent-diffusion autoencoder recipe, as Make-An-Audio uses it).

Reconstruction: L1 with a learned scalar log-variance, ``|x - x^| / exp(logvar) + logvar``,
summed over the mel and averaged over the batch; KL to N(0, I) weighted 1e-6. Adversarial:
hinge loss, the generator term weighted adaptively by the ratio of the gradient norms of the
reconstruction and adversarial terms at the decoder's last layer, switched on at
``disc_start``; an optional R1 penalty on the discriminator's gradient at real mels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nll_loss(mel: torch.Tensor, recon: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll summed per sample and averaged over the batch, mean absolute error for logs)."""
    rec = (mel.float() - recon.float()).abs()
    nll = rec / torch.exp(logvar) + logvar
    return nll.sum() / mel.shape[0], rec.mean()


def kl_loss(posterior) -> torch.Tensor:
    kl = posterior.kl()
    return kl.sum() / kl.shape[0]


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * |grad nll| / (|grad g| + 1e-4)`` at ``last_layer``, clamped to [0, 1e4], no gradient."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grad) / (torch.norm(g_grad) + 1e-4)
    return (weight.clamp(0.0, 1e4) * scale).detach()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of dD/dx at real inputs (``real`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
