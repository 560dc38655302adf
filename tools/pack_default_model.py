"""Pack a trained pipeline folder as mka's embedded default model (float16 weights).

    python tools/pack_default_model.py runs/diff/export mka_core/default_model

Weights are stored in float16 (the pipeline loads them into float32 modules), except 0-d
tensors such as the VAE's scale_factor, which stay float32 because one rounded scalar would
bias every latent. The destination is replaced atomically; its size is printed and must stay
within the repository budget (30 MB).
"""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

from safetensors.torch import load_file, save_file

BUDGET_BYTES = 30 * 1024 * 1024


def pack(source: Path, dest: Path) -> int:
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, tmp)
    try:
        for path in tmp.rglob("*.safetensors"):
            tensors = load_file(str(path))
            packed = {k: (v.half() if v.is_floating_point() and v.dim() > 0 else v).contiguous() for k, v in tensors.items()}
            save_file(packed, str(path), metadata={"format": "pt", "packed": "float16"})
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        if size > BUDGET_BYTES:
            raise SystemExit(f"the packed model is {size / 1e6:.1f} MB, over the {BUDGET_BYTES / 1e6:.0f} MB budget")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return size


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    total = pack(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"packed {sys.argv[1]} -> {sys.argv[2]} ({total / 1e6:.2f} MB)")
