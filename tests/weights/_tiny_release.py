"""The released files' layouts at tiny widths, for the local hub.

Each file has exactly the key names, order and nesting of the released one
(``tests/data/reference/*.layout.json``, checked here key for key); only the widths are
smaller (U-Net 32 channels, VAE 32, BERT 32 wide, BigVGAN 128), which the converters read from
the tensors. Values are seeded noise scaled like trained weights (``tests/convert``'s pool);
the schedule buffers and scale factor are real. Floats are stored as float16, as the convert
tests do.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from tests.convert._fake_checkpoints import BIGVGAN_ARGS, NoisePool, kaiser_filter, layout, lightning, schedule_buffers, value_for

TINY_WIDTH = 32
BIGVGAN_WIDTH = 128
SCHEDULE = (0.00085, 0.012)


def tiny_bert_config(vocab: int = 30522) -> dict:
    return dict(vocab_size=vocab, hidden_size=TINY_WIDTH, num_hidden_layers=12, num_attention_heads=1,
                intermediate_size=64, max_position_embeddings=512, type_vocab_size=2)


def _tiny_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the t2a checkpoint at tiny widths, from the modules the converter builds."""
    import transformers

    from mka_core.convert.maa_b import family_b_vae_config
    from mka_core.models.unet import UNet, UNetConfig
    from mka_core.models.vae import AutoencoderKL

    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        unet = UNet(UNetConfig(model_channels=TINY_WIDTH, context_dim=TINY_WIDTH))
        vae_cfg = family_b_vae_config().model_copy(update={"ch": TINY_WIDTH})
        vae = AutoencoderKL(vae_cfg)
        bert = transformers.BertModel(transformers.BertConfig(**tiny_bert_config()), add_pooling_layer=True)
    shapes.update({"model.diffusion_model." + k: tuple(v.shape) for k, v in unet.state_dict().items()})
    shapes.update({"first_stage_model." + k: tuple(v.shape) for k, v in vae.state_dict().items() if k != "scale_factor"})
    shapes.update({"cond_stage_model.caption_encoder.base." + k: tuple(v.shape) for k, v in bert.state_dict().items()
                   if not k.endswith(("position_ids", "token_type_ids"))})
    w = TINY_WIDTH
    shapes.update({"cond_stage_model.caption_encoder.projection.linear1.weight": (w, w),
                   "cond_stage_model.caption_encoder.projection.linear2.weight": (w, w),
                   "cond_stage_model.caption_encoder.projection.layer_norm.weight": (w,),
                   "cond_stage_model.caption_encoder.projection.layer_norm.bias": (w,)})
    return shapes


def tiny_t2a_state(seed: int = 0, pool: NoisePool | None = None) -> dict[str, torch.Tensor]:
    """ta40multi's state dict, key for key, at tiny widths."""
    pool = pool or NoisePool(seed)
    spec = layout("ta40multi")["tensors"]
    shapes = _tiny_shapes()
    sched = schedule_buffers(*SCHEDULE)
    expected = set(spec) - set(sched) - {"scale_factor"}
    assert set(shapes) == expected, (sorted(set(shapes) ^ expected)[:5])
    state: dict[str, torch.Tensor] = {}
    for key in spec:
        if key in sched:
            state[key] = sched[key]
        elif key == "scale_factor":
            state[key] = torch.tensor(0.9, dtype=torch.float32)
        else:
            state[key] = value_for(pool, key, list(shapes[key]), torch.float16)
    return state


def _bigvgan_dim(d: int) -> int:
    full = {1536 >> k for k in range(7)}
    return d * BIGVGAN_WIDTH // 1536 if d in full else d


def tiny_bigvgan_files(pool: NoisePool) -> dict[str, bytes]:
    """``args.yml`` and ``best_netG.pt`` of the 16 kHz BigVGAN layout at width 128."""
    spec = layout("bigvgan_16k")["tensors"]
    state = {}
    for key, (shape, _kind) in spec.items():
        if key.endswith(".filter"):
            state[key] = kaiser_filter()
        else:
            state[key] = value_for(pool, key, [_bigvgan_dim(d) for d in shape], torch.float16)
    return {"args.yml": BIGVGAN_ARGS.format(width=BIGVGAN_WIDTH).encode(), "best_netG.pt": _saved({"generator": state})}


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def bert_repo_files() -> dict[str, bytes]:
    """google-bert/bert-base-uncased's files mka pulls: the real vocabulary (from the MiniLM package) and a tiny BERT."""
    import transformers
    from safetensors.torch import save

    from mka_plugins.conditioners._hf_text import minilm_folder

    vocab = (Path(minilm_folder()) / "vocab.txt").read_bytes()
    config = tiny_bert_config()
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    return {"config.json": json.dumps({"model_type": "bert", **config}).encode(), "vocab.txt": vocab,
            "tokenizer_config.json": b'{"do_lower_case": true, "model_max_length": 512}\n',
            "model.safetensors": save(tensors)}


def released_repos(seed: int = 0) -> dict[tuple[str, str], dict[str, bytes]]:
    """(repo type, repo id) -> {path in repo: bytes}, laid out as the real repositories are."""
    pool = NoisePool(seed)
    checkpoint = _saved(lightning(tiny_t2a_state(pool=pool)))
    space = {"useful_ckpts/ta40multi_epoch=000085.ckpt": checkpoint, "app.py": b"# the demo's app\n"}
    space.update({f"vocoder/logs/bigv16k53w/{k}": v for k, v in tiny_bigvgan_files(pool).items()})
    return {("space", "DiffusionSpeech/Make_An_Audio"): space,
            ("model", "google-bert/bert-base-uncased"): bert_repo_files()}
