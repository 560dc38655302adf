"""Decode options for a 10 s clip, speed beside quality: VAE decoder vs light decoder, eager vs
``torch.compile``, and every vocoder.

    python -m benchmarks.decode                       # 10 s, base sizes, compile rows included
    python -m benchmarks.decode --model runs/ld/export  # + the quality of that folder's light decoder
    python -m benchmarks.decode --quick --no-compile  # a smoke run (1.28 s, tiny sizes)

Speed: the ``base`` preset's VAE decoder against the ``default`` and ``base`` light decoders
sized for it (random weights: speed does not depend on the values), latents 4 x 10 x 80 ->
mel 80 x 640 (10.24 s); each vocoder on that mel (BigVGAN base, HiFi-GAN V1, Griffin-Lim at
its default 64 iterations and at fewer); with ``torch.compile`` (inductor, CPU or GPU) beside
eager for the decoders and HiFi-GAN, compile time reported apart.

Quality, measured on a synthetic test clip (tones, a chirp, beeps and noise bursts, made here
with a fixed seed; ``--audio FILE`` takes a recording instead):

* light decoder: mel L1 and log-spectral distance (LSD, dB) of the light decoder's mel against
  the VAE decoder's mel on the *same* latents (the VAE's posterior mean of the clip's mel) -
  only for a trained light decoder (``--model`` with a ``light_decoder/``), else ``n/a``;
* compiled rows: the largest absolute difference from the eager output;
* vocoders: copy synthesis (mel -> vocoder -> waveform -> mel, as ``mka eval --resynthesize
  vocoder`` does before its classifier), mel L1 and LSD against the clip's mel. Griffin-Lim needs
  no weights, so its figures are real; HiFi-GAN and BigVGAN here carry random weights (their
  quality column says ``untrained``) unless ``--model`` holds a trained one, which is measured.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.common import Context, context_from_args, parser, sync, time_call, write_json, Row

SR, HOP = 16000, 256


@dataclass
class Option:
    """One decode option: its time for the clip and what its quality measured."""

    case: str
    seconds: float
    quality: str = "-"
    note: str = ""
    device: str = ""
    figures: dict[str, float] = field(default_factory=dict)

    def row(self) -> Row:
        return Row("decode-options", self.case, self.seconds, "s", self.device, "float32", note=self.note,
                   extra={"quality": self.quality, **self.figures})


# -- the test clip and the distances ------------------------------------------------------------
def test_clip(seconds: float, audio: str | None = None) -> torch.Tensor:
    """``[1, N]`` at 16 kHz: a recording (mono, resampled by the loader) or the synthetic clip."""
    n = int(round(seconds * SR))
    if audio:
        from mka_core.audio.io import load_audio

        wave = torch.as_tensor(load_audio(audio, SR)).float().reshape(1, -1)
        return torch.nn.functional.pad(wave, (0, max(0, n - wave.shape[1])))[:, :n]
    g = torch.Generator().manual_seed(7)
    t = torch.arange(n) / SR
    tones = sum(0.15 * torch.sin(2 * math.pi * f * t) for f in (220.0, 330.0, 880.0))
    chirp = 0.2 * torch.sin(2 * math.pi * (200 * t + 300 * t * t / max(seconds, 1e-3)))
    beeps = 0.2 * torch.sin(2 * math.pi * 1800 * t) * ((t * 3) % 1 < 0.2)
    bursts = 0.1 * torch.randn(n, generator=g) * ((t * 0.7) % 1 < 0.25)
    return (tones * (t < seconds / 2) + chirp * (t >= seconds / 2) + beeps + bursts).reshape(1, -1).float()


def mel_distance(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mel L1 and log-spectral distance (dB) between two log10 mels (same scaling), on their common frames."""
    from training.targets.light_decoder import mel_distances

    a, b = a.reshape(-1, a.shape[-1]).float(), b.reshape(-1, b.shape[-1]).float()
    frames = min(a.shape[-1], b.shape[-1])
    return mel_distances(a[:, :frames], b[:, :frames])


def quality_text(d: dict[str, float], against: str) -> str:
    return f"mel L1 {d['mel_l1']:.3f}, LSD {d['lsd_db']:.2f} dB vs {against}"


# -- timing with compile --------------------------------------------------------------------------
def timed(fn, ctx: Context, reps: int) -> float:
    return time_call(fn, ctx.device, reps=reps).best


def compiled_option(case: str, module, x: torch.Tensor, eager_out: torch.Tensor, ctx: Context, reps: int,
                    note: str = "") -> Option:
    """``module`` under ``torch.compile``: best time after the compiling call, and its drift from eager."""
    from mka_core.models.compiled import inductor_cache_dir

    inductor_cache_dir()
    fn = torch.compile(module)
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn(x)
    sync(ctx.device)
    compile_s = time.perf_counter() - start
    seconds = timed(lambda: fn(x), ctx, reps)
    drift = float((out.float() - eager_out.float()).abs().max())
    return Option(case, seconds, f"max |compiled - eager| {drift:.2e}", f"compile {compile_s:.0f} s (first call); {note}".rstrip("; "),
                  ctx.device_name, {"compile_s": compile_s, "max_abs_diff": drift})


# -- the options -----------------------------------------------------------------------------------
def decoders(ctx: Context, seconds: float, compile_: bool, model=None) -> list[Option]:
    from mka_core.models.light_decoder import LightDecoder
    from mka_core.models.vae import AutoencoderKL, VAEConfig

    preset = "tiny" if ctx.quick else "base"
    torch.manual_seed(0)
    vae = AutoencoderKL(VAEConfig.preset(preset)).eval().requires_grad_(False).to(ctx.device)
    frames = int(round(seconds * SR / HOP / 8)) * 8
    z = torch.randn(1, vae.latent_channels, 80 // vae.downsampling[0], frames // vae.downsampling[1],
                    generator=torch.Generator().manual_seed(3)).to(ctx.device)
    label = f"{frames * HOP / SR:.2f} s"
    reps = ctx.reps
    options: list[Option] = []
    with torch.inference_mode():
        vae_out = vae.decode_latents(z)
    vae_s = timed(lambda: vae.decode_latents(z), ctx, reps)
    options.append(Option(f"VAE decoder ({preset}) {label}", vae_s, "the reference", f"{count(vae.decoder)} params in the decoder",
                          ctx.device_name))
    lights = [("default", LightDecoder.for_vae(vae, "default"))]
    if not ctx.quick:
        lights.append(("base", LightDecoder.for_vae(vae, "base")))
    for name, light in lights:
        light = light.eval().requires_grad_(False).to(ctx.device)
        with torch.inference_mode():
            light_out = light(z)
        assert light_out.shape == vae_out.shape, (light_out.shape, vae_out.shape)
        s = timed(lambda: light(z), ctx, reps)
        options.append(Option(f"light decoder '{name}' {label}", s, "n/a (random weights; see the trained row)",
                              f"{count(light)} params; {vae_s / s:.1f}x faster than the VAE decoder", ctx.device_name))
        if compile_:
            options.append(compiled_option(f"light decoder '{name}' {label}, torch.compile", light, z, light_out, ctx, reps))
    if compile_:
        decode = _Decode(vae)
        options.append(compiled_option(f"VAE decoder ({preset}) {label}, torch.compile", decode, z, vae_out, ctx, reps))
    if model is not None:
        options += trained_light_decoder(ctx, model, seconds)
    return options


class _Decode(torch.nn.Module):
    """The VAE's decode path as a module (what torch.compile wraps)."""

    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_latents(z)


def trained_light_decoder(ctx: Context, pipe, seconds: float) -> list[Option]:
    """The quality of ``pipe``'s light decoder against its own VAE decoder on the test clip's latents."""
    dur = min(seconds, pipe.config.defaults.duration)
    if pipe.light_decoder is None:
        return [Option(f"light decoder of {pipe.directory.name}", float("nan"), "n/a: the model has no light decoder "
                       "(mka train light-decoder --teacher MODEL)", device=ctx.device_name)]
    wave = test_clip(dur, ctx.audio).to(pipe.device)
    frames = pipe.frames_for(dur)[0]
    with torch.inference_mode():
        mel = pipe.mel(wave)[..., :frames]
        mel = torch.nn.functional.pad(mel, (0, frames - mel.shape[-1]))
        z = pipe.encode_mel(mel)  # the posterior mean, scaled: what the light decoder is trained on
        vae_mel = pipe.vae.decode_latents(z).float()
        light_mel = pipe.light_decoder(z).float()
    d = mel_distance(light_mel, vae_mel)
    real = mel_distance(vae_mel, mel)
    vae_s = timed(lambda: pipe.vae.decode_latents(z), ctx, ctx.reps)
    light_s = timed(lambda: pipe.light_decoder(z), ctx, ctx.reps)
    name = pipe.directory.name
    return [
        Option(f"VAE decoder of {name}, {dur:.2f} s", vae_s, quality_text(real, "the clip's own mel (VAE round trip)"),
               device=ctx.device_name, figures={f"vae_{k}": v for k, v in real.items()}),
        Option(f"light decoder of {name} (trained), {dur:.2f} s", light_s, quality_text(d, "the VAE decoder, same latents"),
               f"{vae_s / light_s:.1f}x faster than its VAE decoder", ctx.device_name, d),
    ]


def vocoders(ctx: Context, seconds: float, compile_: bool, model=None) -> list[Option]:
    from mka_core.audio.mel import MelConfig, MelFrontEnd
    from mka_core.presets import build_vocoder

    frontend = MelFrontEnd(MelConfig()).to(ctx.device)
    wave = test_clip(seconds, ctx.audio).to(ctx.device)
    with torch.inference_mode():
        mel = frontend.to_log10(frontend(wave)).squeeze(1)  # [1, 80, T], what vocoders take
    clip_s = wave.shape[1] / SR
    options = []
    cases = [("bigvgan", "base", {}), ("hifigan", "v1", {}), ("griffin-lim", None, {})]
    for iterations in ((16,) if ctx.quick else (32, 16, 8)):
        cases.append(("griffin-lim", None, {"iterations": iterations}))
    if model is not None and getattr(type(model.vocoder), "has_weights", True):
        cases.append((model.config.vocoder, "model", {}))
    for name, preset, changes in cases:
        if preset == "model":
            voc, trained, label = model.vocoder, True, f"{name} of {model.directory.name} (trained)"
        else:
            torch.manual_seed(0)
            voc = build_vocoder(name, preset)
            if changes:
                voc = type(voc)(voc.config.model_copy(update=changes))
            trained = not getattr(type(voc), "has_weights", True)
            label = name + (f" {preset}" if preset else "") + (f", {changes['iterations']} iterations" if changes else "")
        voc = voc.eval().requires_grad_(False).to(ctx.device)
        reps = 1 if (ctx.quick and name == "bigvgan") else ctx.reps
        with torch.inference_mode():
            out = voc(mel)
        s = timed(lambda: voc(mel), ctx, reps)
        with torch.inference_mode():
            again = frontend.to_log10(frontend(out.reshape(1, -1).float())).squeeze(1)
        d = mel_distance(again, mel)
        quality = quality_text(d, "the input mel (copy synthesis)") if trained else \
            f"untrained weights (copy synthesis mel L1 {d['mel_l1']:.3f}: not a quality figure)"
        options.append(Option(f"vocoder {label} {clip_s:.2f} s", s, quality, f"{clip_s / s:.2f}x real time",
                              ctx.device_name, d))
        if compile_ and name == "hifigan" and not ctx.quick:
            options.append(compiled_option(f"vocoder {label} {clip_s:.2f} s, torch.compile", voc, mel, out, ctx, reps))
    return options


def count(module: torch.nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n / 1e3:.0f} k"


def print_options(title: str, options: list[Option]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("option", "time", "quality (measured)", "note", "device"):
        table.add_column(column, overflow="fold")
    for o in options:
        time_text = "-" if math.isnan(o.seconds) else (f"{o.seconds * 1e3:.1f} ms" if o.seconds < 1 else f"{o.seconds:.2f} s")
        table.add_row(o.case, time_text, o.quality, o.note, o.device)
    Console(width=220).print(table)


def run(ctx: Context, *, compile_: bool | None = None, model=None) -> list[Row]:
    """Rows for run_all-style callers (compile on unless quick)."""
    options = collect(ctx, compile_=not ctx.quick if compile_ is None else compile_, model=model)
    return [o.row() for o in options]


def collect(ctx: Context, *, compile_: bool, model=None) -> list[Option]:
    if not hasattr(ctx, "audio"):
        ctx.audio = None
    seconds = 1.28 if ctx.quick else 10.24
    return decoders(ctx, seconds, compile_, model) + vocoders(ctx, seconds, compile_, model)


def main() -> None:
    import os

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a model folder (or name) whose light decoder and vocoder are measured too")
    p.add_argument("--audio", default=None, help="a recording for the quality columns (default: the synthetic clip)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows (their first call compiles)")
    args = p.parse_args()
    ctx = context_from_args(args)
    ctx.audio = args.audio
    model = None
    if args.model:
        from mka_core.pipeline import Pipeline

        model = Pipeline.from_pretrained(args.model, device=ctx.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    options = collect(ctx, compile_=not args.no_compile, model=model)
    print_options(f"Decode options — {ctx.device_name} — load average {load:.2f} at start", options)
    if args.json:
        write_json(args.json, ctx, [o.row() for o in options], load_average_at_start=load)


if __name__ == "__main__":
    main()
