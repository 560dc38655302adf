"""`mka data prepare` over a manifest with broken rows reports exactly those and keeps every good one.

The small version of the load test (benchmarks/bench_prepare_load.py, 10 000 rows; figures in
docs/reliability.md): 200 rows of which 10 are broken in every way the benchmark uses, prepared
by the real CLI in a child process with two workers. It checks exactness, not time. The corpus
sits in a folder whose name holds "NaN" and "empty", words the reasons are made of, so a reason
taken from the path instead of the failure would show.
"""

from __future__ import annotations

from benchmarks.bench_prepare_load import BROKEN_KINDS, run_load_test


def test_prepare_reports_exactly_the_broken_rows_and_keeps_the_good_ones(tmp_path):
    folder = tmp_path / "NaN or empty recordings"
    corpus, outcome, _ = run_load_test(folder, rows=200, broken_share=0.05, workers=2)
    assert len(corpus.broken) == 10 and set(corpus.broken.values()) == set(BROKEN_KINDS)
    assert outcome.returncode == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.problems == []
    assert "prepared 190 of 200 rows" in outcome.stdout
