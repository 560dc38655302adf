"""The objective scores of ``mka eval``: Fréchet distance, KL divergence, label accuracy.

All three work on what an audio classifier says about the reference and the generated clips:

* **Fréchet distance** (FD) between Gaussians fitted to the classifier's embeddings of the two
  sets: ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``. Computed in float64; the trace
  of the matrix square root comes from the eigenvalues of the symmetric PSD matrix
  ``S1^(1/2) S2 S1^(1/2)`` (same eigenvalues as ``S1 S2``), so no complex ``sqrtm`` residue and no
  failure when a covariance is singular (fewer clips than embedding dimensions).
* **KL divergence**, paired: clip ``i`` of the generated set was made from the caption of
  reference clip ``i``; the score is the mean over pairs of ``KL(ref_i || gen_i)`` of the
  classifier's label distributions (AudioGen / Make-An-Audio / AudioLDM's "KL"). For a
  multi-label (sigmoid) classifier the per-class probabilities are normalised to sum to one first.
  :func:`kl_sigmoid` gives AudioLDM's "KL_Sigmoid" variant on the raw sigmoid outputs.
* **Accuracy**: a clip counts as correct when the classifier's top class is one of its labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mka_core.errors import InputError

#: Probabilities are clipped to at least this before taking logs (a zero would give infinite KL).
KL_EPS = 1e-6


def _as_matrix(values, what: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"The {what} must be a matrix [clips, dims], got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise InputError(f"The {what} contain NaN or infinite values.")
    return array


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``features [N, D]``, N >= 2."""
    x = _as_matrix(features, "features")
    if x.shape[0] < 2:
        raise InputError(f"A Gaussian fit needs at least 2 clips, got {x.shape[0]}.")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False, ddof=1))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (tiny negative eigenvalues from rounding -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1``, ``S2``."""
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, S1) and N(mu2, S2)."""
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise InputError(f"Gaussians of different sizes: means {mu1.shape} and {mu2.shape}, covariances "
                         f"{sigma1.shape} and {sigma2.shape}.")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # Rounding can leave a value of about -1e-12 for identical Gaussians; a distance is never negative.
    return float(max(value, 0.0))


def frechet_distance_features(a, b) -> float:
    """FD between Gaussians fitted to two sets of embeddings ``[N1, D]`` and ``[N2, D]``."""
    mu_a, sigma_a = gaussian_fit(a)
    mu_b, sigma_b = gaussian_fit(b)
    if mu_a.shape != mu_b.shape:
        raise InputError(f"Embeddings of different widths: {mu_a.size} and {mu_b.size}.")
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def split_halves(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two interleaved halves (even / odd positions) of ``count`` clips."""
    indices = np.arange(count)
    return indices[0::2], indices[1::2]


def _paired(ref, gen) -> tuple[np.ndarray, np.ndarray]:
    p, q = _as_matrix(ref, "reference probabilities"), _as_matrix(gen, "generated probabilities")
    if p.shape != q.shape:
        raise InputError(f"KL needs one generated clip per reference clip: got {p.shape} and {q.shape}.")
    if p.shape[0] == 0:
        raise InputError("KL needs at least one pair of clips.")
    return p, q


def _normalised(probs: np.ndarray) -> np.ndarray:
    probs = np.clip(probs, KL_EPS, None)
    return probs / probs.sum(axis=1, keepdims=True)


def kl_per_pair(ref_probs, gen_probs) -> np.ndarray:
    """``KL(ref_i || gen_i)`` in nats for each pair; rows are normalised to label distributions."""
    p, q = _paired(ref_probs, gen_probs)
    p, q = _normalised(p), _normalised(q)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def kl_divergence(ref_probs, gen_probs) -> float:
    """Mean over pairs of ``KL(ref || gen)`` of the classifier's label distributions (>= 0)."""
    return float(kl_per_pair(ref_probs, gen_probs).mean())


def kl_sigmoid(ref_probs, gen_probs) -> float:
    """AudioLDM's "KL_Sigmoid": ``sum_c p_c log(p_c / q_c)`` on raw per-class sigmoid outputs, mean over pairs.

    The rows are not distributions, so unlike :func:`kl_divergence` this can be negative; it
    exists to compare with numbers published with that convention.
    """
    p, q = _paired(ref_probs, gen_probs)
    p, q = np.clip(p, KL_EPS, 1.0), np.clip(q, KL_EPS, 1.0)
    return float((p * (np.log(p) - np.log(q))).sum(axis=1).mean())


def top_class_hits(probs, labels: Sequence[Sequence[int]]) -> np.ndarray:
    """Per clip: is the highest-scoring class one of the clip's label indices?"""
    p = _as_matrix(probs, "probabilities")
    if p.shape[0] != len(labels):
        raise InputError(f"Got {p.shape[0]} predictions for {len(labels)} label sets.")
    top = p.argmax(axis=1)
    return np.array([int(t) in set(row) for t, row in zip(top, labels)], dtype=bool)


def label_accuracy(probs, labels: Sequence[Sequence[int]]) -> float:
    """Share of clips whose top class is among their labels."""
    hits = top_class_hits(probs, labels)
    if hits.size == 0:
        raise InputError("Accuracy needs at least one labelled clip.")
    return float(hits.mean())
