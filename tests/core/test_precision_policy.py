"""bfloat16 on a CPU that only emulates it runs float32; the pipeline says so and records it.
Long latents decode in overlapping time slices; short ones in one pass."""

from __future__ import annotations

import pytest
import torch

from mka_core.models import precision
from mka_core.models.precision import compute_dtype


def test_compute_dtype_rules(monkeypatch):
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert compute_dtype(cpu, torch.float32) == torch.float32
    assert compute_dtype(cpu, torch.float16) == torch.float16
    assert compute_dtype(meta, torch.bfloat16) == torch.bfloat16  # only the CPU is judged
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    assert compute_dtype(cpu, torch.bfloat16) == torch.float32
    monkeypatch.setenv(precision.FORCE_ENV, "1")
    assert compute_dtype(cpu, torch.bfloat16) == torch.bfloat16
    monkeypatch.delenv(precision.FORCE_ENV)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert compute_dtype(cpu, torch.bfloat16) == torch.bfloat16


@pytest.fixture(scope="module")
def tiny_pipe():
    from mka_core.presets import build_pipeline

    return build_pipeline("tiny", "bert", device="cpu")


def test_pipeline_reports_the_dtype_it_runs(tiny_pipe, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    try:
        tiny_pipe.to("cpu", "bfloat16")
        assert tiny_pipe.dtype == torch.float32 and tiny_pipe.requested_dtype == torch.bfloat16
        assert tiny_pipe.unet.time_embed[0].weight.dtype == torch.float32
        assert "bfloat16" in tiny_pipe.precision_note and tiny_pipe.describe()["requested_dtype"] == "bfloat16"
        monkeypatch.setenv(precision.FORCE_ENV, "1")
        tiny_pipe.to("cpu", "bfloat16")
        assert tiny_pipe.dtype == torch.bfloat16 and tiny_pipe.precision_note is None
        assert tiny_pipe.unet.time_embed[0].weight.dtype == torch.bfloat16
    finally:
        tiny_pipe.to("cpu", "float32")
    assert tiny_pipe.dtype == tiny_pipe.requested_dtype == torch.float32
    assert "requested_dtype" not in tiny_pipe.describe()


def test_wide_latents_decode_in_slices(tiny_pipe):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 10, 24, generator=gen)
    old = tiny_pipe.decode_tile_columns, tiny_pipe.decode_tile_overlap
    try:
        tiny_pipe.decode_tile_columns, tiny_pipe.decode_tile_overlap = 16, 4
        sliced = tiny_pipe.decode_latents(z)
        with torch.no_grad():
            expected = tiny_pipe.vae.decode_latents(z, tile=16, overlap=4)
            whole = tiny_pipe.vae.decode_latents(z)
        assert torch.equal(sliced, expected) and not torch.equal(sliced, whole)
        tiny_pipe.decode_tile_columns = 24  # not wider than a slice: one pass
        assert torch.equal(tiny_pipe.decode_latents(z), whole)
    finally:
        tiny_pipe.decode_tile_columns, tiny_pipe.decode_tile_overlap = old
