"""Weight normalisation for the vocoder generators: folding it away, and adding it for training.

mka stores generator convolutions with plain, already-folded weights: inference then skips
recomputing ``g * v / ||v||`` in every call. Released checkpoints (BigVGAN, HiFi-GAN) keep
the factored form, under two spellings:

* the old hook API (``torch.nn.utils.weight_norm``): ``<conv>.weight_g`` and ``<conv>.weight_v``;
* the parametrization API (``torch.nn.utils.parametrizations.weight_norm``):
  ``<conv>.parametrizations.weight.original0`` (g) and ``...original1`` (v).

Both normalise over every axis except the one ``g`` keeps (axis 0 by default). For a
``ConvTranspose1d`` weight ``[in, out, k]`` axis 0 is the *input* channel, so its ``g`` is
``[in, 1, 1]``; the axis is read from ``g``'s shape, so no special case is needed.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from mka_core.errors import WeightsError

_HOOK_SUFFIXES = ("weight_g", "weight_v")
_PARAM_SUFFIXES = ("parametrizations.weight.original0", "parametrizations.weight.original1")


def _has_suffix(key: str, suffix: str) -> bool:
    """``key`` is ``suffix`` itself or ends with ``.suffix`` (a whole dotted component)."""
    return key == suffix or key.endswith("." + suffix)


def effective_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||``, the norm taken over every axis of ``v`` except the one ``g`` keeps.

    Computed in float64 and returned in ``v``'s dtype.
    """
    if g.dim() == 0 or (g.numel() == 1 and v.shape[0] != 1):
        kept = None  # weight_norm(dim=None): one scalar gain for the whole tensor
    else:
        if g.dim() != v.dim():
            raise WeightsError(f"Weight-norm gain of shape {tuple(g.shape)} does not fit direction {tuple(v.shape)}.")
        kept_axes = [axis for axis, size in enumerate(g.shape) if size != 1]
        kept = kept_axes[0] if kept_axes else 0
        if len(kept_axes) > 1 or g.shape[kept] != v.shape[kept]:
            raise WeightsError(f"Weight-norm gain of shape {tuple(g.shape)} does not fit direction {tuple(v.shape)}.")
    v64 = v.to(torch.float64)
    if kept is None:
        norm = v64.norm()
    else:
        other = [axis for axis in range(v.dim()) if axis != kept]
        norm = v64.pow(2).sum(dim=other, keepdim=True).sqrt()
    return (g.to(torch.float64) * v64 / norm).to(v.dtype)


def fold_weight_norm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``state_dict`` with every weight-norm pair replaced by ``<conv>.weight``.

    Accepts both the hook spelling and the parametrization spelling; every other entry passes
    through unchanged. A gain without its direction (or the reverse) is a ``WeightsError``.
    """
    folded: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for g_suffix, v_suffix in (_HOOK_SUFFIXES, _PARAM_SUFFIXES):
            if _has_suffix(key, g_suffix) or _has_suffix(key, v_suffix):
                is_gain = _has_suffix(key, g_suffix)
                prefix = key[: -len(g_suffix if is_gain else v_suffix)]  # "" or "<conv>."
                partner = prefix + (v_suffix if is_gain else g_suffix)
                if partner not in state_dict:
                    conv = prefix.rstrip(".") or "(top level)"
                    raise WeightsError(
                        f"Checkpoint has '{key}' but not '{partner}'; the weight-normalised conv '{conv}' "
                        "is incomplete, so the file is damaged or of another layout."
                    )
                if is_gain:
                    folded[prefix + "weight"] = effective_weight(tensor, state_dict[partner])
                break
        else:
            folded[key] = tensor
    return folded


def load_folded_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Fold weight norm, then load into ``module`` requiring an exact key and shape match.

    ``source`` names the checkpoint in error messages. Values are cast to the module's dtypes.
    """
    folded = fold_weight_norm(state_dict)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(folded))
    unexpected = sorted(set(folded) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not match the {type(module).__name__} configuration: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; "
            "check that the config (channels, kernels, rates) is the one the checkpoint was trained with."
        )
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(folded[k].shape)]
    if wrong:
        first = wrong[0]
        raise WeightsError(
            f"{source}: '{first}' has shape {tuple(folded[first].shape)} but the model expects "
            f"{tuple(expected[first].shape)} ({len(wrong)} tensors differ); the config does not match the checkpoint."
        )
    module.load_state_dict(folded, strict=True)


def _weighted_convs(module: nn.Module) -> list[nn.Module]:
    kinds = (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d)
    return [m for m in module.modules() if isinstance(m, kinds)]


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Re-parametrise every conv of ``module`` as ``g * v / ||v||`` (for GAN training).

    The state dict then holds ``parametrizations.weight.original0/1``; call
    :func:`remove_weight_norm` before saving an mka model folder.
    """
    for conv in _weighted_convs(module):
        if not nn.utils.parametrize.is_parametrized(conv, "weight"):
            nn.utils.parametrizations.weight_norm(conv, name="weight", dim=0)
    return module


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold the weight-norm parametrisation back into plain conv weights (inverse of the above)."""
    for conv in _weighted_convs(module):
        if nn.utils.parametrize.is_parametrized(conv, "weight"):
            nn.utils.parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return module
