"""Pack a trained pipeline folder as mka's embedded default model (float16 weights, licence beside).

    python tools/pack_default_model.py runs/diff/export mka_core/default_model \
        --licence CC-BY-SA-4.0 --attribution data/real --licence-text tools/default_model_LICENSE.txt

Weights are stored in float16 (the pipeline loads them into float32 modules), except 0-d
tensors such as the VAE's scale_factor, which stay float32 because one rounded scalar would
bias every latent. With ``--licence`` the folder's ``model_index.json`` records the weights'
licence and ``--licence-text`` is copied in as ``LICENSE.txt``; ``--attribution`` is the corpus
folder whose ``ATTRIBUTION.md`` and ``ATTRIBUTION.tsv`` (written by ``mka data real``) credit every
recording the weights learnt from. ``--guidance`` records the guidance scale the default model
generates with (chosen by measurement on the held-out set after training, docs/default-model.md)
in place of the one the training recipe wrote, and ``--origin`` names where the weights come from
(the run folder's name otherwise). The destination is replaced atomically; its size is printed
and must stay within the repository budget (50 MB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import uuid
from pathlib import Path

from safetensors.torch import load_file, save_file

BUDGET_BYTES = 50 * 1000 * 1000


def pack(source: Path, dest: Path, licence: str | None = None, licence_text: Path | None = None,
         attribution: Path | None = None, guidance: float | None = None, origin: str | None = None) -> int:
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, tmp)
    try:
        for path in tmp.rglob("*.safetensors"):
            tensors = load_file(str(path))
            packed = {k: (v.half() if v.is_floating_point() and v.dim() > 0 else v).contiguous() for k, v in tensors.items()}
            save_file(packed, str(path), metadata={"format": "pt", "packed": "float16"})
        if licence or guidance is not None or origin:
            index_path = tmp / "model_index.json"
            index = json.loads(index_path.read_text())
            if licence:
                index["pipeline"]["licence"] = licence
            if guidance is not None:
                if not guidance >= 1.0:
                    raise SystemExit(f"--guidance {guidance}: give a scale of at least 1 (1 is unguided).")
                index["pipeline"]["defaults"]["guidance"] = float(guidance)
            if origin:
                index["pipeline"]["origin"] = origin
            index_path.write_text(json.dumps(index, indent=2) + "\n")
        if licence_text is not None:
            shutil.copyfile(licence_text, tmp / "LICENSE.txt")
        if attribution is not None:
            for name in ("ATTRIBUTION.md", "ATTRIBUTION.tsv"):
                if not (attribution / name).is_file():
                    raise SystemExit(f"{attribution / name} is missing; give the folder `mka data real` wrote.")
                shutil.copyfile(attribution / name, tmp / name)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a trained pipeline folder (a run's export)")
    parser.add_argument("dest", type=Path, help="where the packed model goes (replaced)")
    parser.add_argument("--licence", default=None, help="the weights' licence, e.g. CC-BY-SA-4.0")
    parser.add_argument("--licence-text", type=Path, default=None, help="a LICENSE.txt to put beside the weights")
    parser.add_argument("--attribution", type=Path, default=None, help="the corpus folder with ATTRIBUTION.md/.tsv")
    parser.add_argument("--guidance", type=float, default=None,
                        help="the guidance scale the packed model generates with (default: the recipe's)")
    parser.add_argument("--origin", default=None,
                        help="what the model index records as its origin (default: the run's, trained:<run folder>)")
    args = parser.parse_args()
    total = pack(args.source, args.dest, args.licence, args.licence_text, args.attribution, args.guidance, args.origin)
    print(f"packed {args.source} -> {args.dest} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
