"""The evaluation metrics against closed forms: Fréchet distance, KL divergence, label accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from mka_core.errors import InputError
from training.evaluation import metrics


def random_spd(rng: np.random.Generator, dim: int, scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return scale * (a @ a.T / dim + 0.1 * np.eye(dim))


def fd_with_scipy(mu1, s1, mu2, s2) -> float:
    """The textbook formula with a general matrix square root (the slow, complex-valued path)."""
    root = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)


def test_identical_gaussians_are_at_distance_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(16), random_spd(rng, 16)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_shifted_means_with_equal_covariances_give_the_squared_shift():
    rng = np.random.default_rng(1)
    mu, sigma, shift = rng.standard_normal(8), random_spd(rng, 8), rng.standard_normal(8)
    assert metrics.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_diagonal_covariances_match_the_closed_form():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())  # 5 + 4 + 1
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(10.0)


def test_non_commuting_covariances_match_scipy_sqrtm_and_are_symmetric():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    s1, s2 = random_spd(rng, 12), random_spd(rng, 12, scale=3.0)
    ours = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(fd_with_scipy(mu1, s1, mu2, s2), rel=1e-8)
    assert ours == pytest.approx(metrics.frechet_distance(mu2, s2, mu1, s1), rel=1e-10)


def test_one_dimensional_case_is_mean_and_std_differences():
    # For scalars FD = (m1 - m2)^2 + (sd1 - sd2)^2.
    assert metrics.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4.0 + 1.0)


def test_features_from_two_shifted_gaussians_estimate_the_shift():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20000, 4))
    b = rng.standard_normal((20000, 4)) + np.array([2.0, 0.0, 0.0, 0.0])
    assert metrics.frechet_distance_features(a, b) == pytest.approx(4.0, abs=0.1)
    assert metrics.frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fewer_clips_than_dimensions_still_gives_a_finite_distance():
    # Singular covariances (rank 5 in 64 dimensions) are where a naive sqrtm goes complex.
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 64)), rng.standard_normal((6, 64)) + 0.5
    value = metrics.frechet_distance_features(a, b)
    assert math.isfinite(value) and value > 0
    assert metrics.frechet_distance_features(a, a.copy()) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_fit_needs_two_clips():
    with pytest.raises(InputError, match="at least 2"):
        metrics.gaussian_fit(np.ones((1, 3)))


def test_split_halves_interleaves():
    first, second = metrics.split_halves(5)
    assert first.tolist() == [0, 2, 4] and second.tolist() == [1, 3]


# -- KL ----------------------------------------------------------------------------------------


def test_kl_of_identical_distributions_is_zero_and_otherwise_positive():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(6), size=10)
    q = rng.dirichlet(np.ones(6), size=10)
    assert metrics.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert (metrics.kl_per_pair(p, q) > 0).all()


def test_kl_matches_the_two_class_closed_form_and_is_asymmetric():
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert metrics.kl_divergence(p, q) == pytest.approx(expected, rel=1e-5)
    assert metrics.kl_divergence(q, p) != pytest.approx(expected, rel=1e-3)  # KL(q||p) differs


def test_kl_is_the_mean_over_pairs_not_of_the_mean_distributions():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[0.0, 1.0], [1.0, 0.0]])
    # Averaged distributions would be identical (KL 0); paired KL sees every clip miss.
    assert metrics.kl_divergence(p, q) > 5.0
    assert metrics.kl_per_pair(p, q).shape == (2,)


def test_kl_normalises_sigmoid_rows_to_label_distributions():
    sigmoid = np.array([[0.8, 0.4]])
    assert metrics.kl_divergence(sigmoid, sigmoid / 2) == pytest.approx(0.0, abs=1e-12)  # same distribution
    # The AudioLDM variant works on raw outputs, where this pair differs and the sum can go negative.
    assert metrics.kl_sigmoid(sigmoid, sigmoid / 2) == pytest.approx(1.2 * math.log(2), rel=1e-6)
    assert metrics.kl_sigmoid(np.array([[0.1, 0.1]]), np.array([[0.9, 0.9]])) < 0


def test_kl_rejects_unpaired_sets():
    with pytest.raises(InputError, match="one generated clip per reference"):
        metrics.kl_divergence(np.ones((3, 2)) / 2, np.ones((2, 2)) / 2)


# -- accuracy ------------------------------------------------------------------------------------


def test_accuracy_counts_a_top_class_among_the_row_labels():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = [[0], [0, 1], [1], [2]]
    assert metrics.top_class_hits(probs, labels).tolist() == [True, True, False, False]
    assert metrics.label_accuracy(probs, labels) == pytest.approx(0.5)


def test_metrics_reject_non_finite_values():
    with pytest.raises(InputError, match="NaN"):
        metrics.frechet_distance_features(np.array([[0.0, np.nan], [1.0, 2.0]]), np.ones((2, 2)))


# -- mka eval compare --------------------------------------------------------------------------------
def _report(correct, kl, fd=1.0, manifest="m.tsv"):
    items = [{"name": f"clip{i}", "correct": c, "kl": k} for i, (c, k) in enumerate(zip(correct, kl))]
    return {"manifest": manifest, "metrics": {"fd": fd}, "items": items}


def test_mcnemar_exact_p_matches_the_binomial_tail():
    from training.evaluation.compare import mcnemar_exact_p

    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(1, 1) == 1.0
    # 7 vs 1 discordant: 2 * P(X <= 1), X ~ Binomial(8, 1/2) = 2 * 9/256.
    assert mcnemar_exact_p(7, 1) == pytest.approx(18 / 256)
    assert mcnemar_exact_p(1, 7) == mcnemar_exact_p(7, 1)
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 1024)


def test_compare_pairs_clips_by_name_and_calls_a_clear_difference():
    from training.evaluation.compare import compare_reports, verdict

    a = _report([True] * 40 + [False] * 10, [0.5] * 50, fd=10.0)
    b = _report([True] * 50, [0.3] * 50, fd=8.0)
    b["items"].reverse()  # order does not matter, names do
    result = compare_reports(a, b)
    assert result["clips"] == 50
    acc = result["accuracy"]
    assert (acc["a"], acc["b"], acc["right_only_in_a"], acc["right_only_in_b"]) == (0.8, 1.0, 0, 10)
    assert acc["p_value"] == pytest.approx(2 / 1024)
    assert result["kl"]["difference"] == pytest.approx(-0.2) and result["kl"]["interval_95"][1] < 0
    assert result["fd"] == {"a": 10.0, "b": 8.0}
    assert "accuracy better" in verdict(result) and "KL better" in verdict(result)


def test_compare_reads_small_differences_as_noise():
    from training.evaluation.compare import compare_reports, verdict

    rng = np.random.default_rng(1)
    kl = rng.uniform(0, 2, 60)
    a = _report([i % 3 > 0 for i in range(60)], kl)
    flipped = [i % 3 > 0 for i in range(60)]
    flipped[0], flipped[1] = True, False  # one clip gained, one lost
    b = _report(flipped, kl + rng.normal(0, 0.3, 60))
    result = compare_reports(a, b)
    assert result["accuracy"]["p_value"] == 1.0
    low, high = result["kl"]["interval_95"]
    assert low < 0 < high
    assert "equal within the noise" in verdict(result)


def test_compare_cli_and_its_errors(tmp_path):
    import json

    from tests.conftest import assert_clean_error, run_cli

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report([True, False, True, True], [0.1, 0.9, 0.2, 0.3])))
    b.write_text(json.dumps(_report([True, True, True, True], [0.1, 0.5, 0.2, 0.3], manifest="other.tsv")))
    out = tmp_path / "cmp.json"
    result = run_cli("eval", "compare", a, b, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "McNemar p = 1.000" in result.stdout and "different manifests" in result.stdout
    written = json.loads(out.read_text())
    assert written["accuracy"]["right_only_in_b"] == 1 and written["clips"] == 4

    assert_clean_error(run_cli("eval", "compare", a, tmp_path / "missing.json"), "does not exist")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_clean_error(run_cli("eval", "compare", a, broken), "not a JSON report")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"metrics": {}, "items": [{"name": "zzz", "kl": 0.1}]}))
    assert_clean_error(run_cli("eval", "compare", a, other), "share no clip")


def test_compare_breaks_accuracy_down_by_each_clips_first_label(tmp_path):
    import json

    from tests.conftest import run_cli
    from training.evaluation.compare import compare_reports

    labels = [["dog_bark"], ["dog_bark", "rain"], ["siren"], ["siren"], ["siren"], ["birds"]]
    a = _report([False, False, True, True, True, True], [0.1] * 6)
    b = _report([True, False, True, False, False, True], [0.1] * 6)
    for report in (a, b):
        for item, item_labels in zip(report["items"], labels):
            item["labels"] = item_labels
    rows = compare_reports(a, b)["per_class"]
    assert sorted(rows) == ["birds", "dog_bark", "siren"]
    assert rows["dog_bark"] == {"clips": 2, "a": 0.0, "b": 0.5, "right_only_in_a": 0, "right_only_in_b": 1}
    assert rows["siren"]["clips"] == 3 and rows["siren"]["right_only_in_a"] == 2
    assert rows["siren"]["a"] == 1.0 and rows["siren"]["b"] == pytest.approx(1 / 3)

    # Without labels there is no breakdown, and the flag says so instead of failing.
    assert "per_class" not in compare_reports(_report([True], [0.1]), _report([False], [0.1]))
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    result = run_cli("eval", "compare", pa, pb, "--per-class")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 3}
    assert "+50 pt" in lines["dog_bark"] and "-67 pt" in lines["siren"] and "2 / 0" in lines["siren"]
    plain = run_cli("eval", "compare", pa, pb)
    assert "dog_bark" not in plain.stdout
