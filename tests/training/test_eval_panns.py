"""The built-in ``panns-cnn14`` audio classifier: checkpoint layout, front end, loading, and ``mka eval`` with it.

The weights here are random tensors in the layout of the public ``Cnn14_mAP=0.431.pth`` (a dict
whose ``model`` entry is the state dict, with the original front end's tensors included).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from mka_core.errors import MkaError, WeightsError
from tests.conftest import run_cli
from training.evaluation.classifier import load_classifier

WEIGHTS = "Cnn14_mAP=0.431.pth"
WIDTHS = [64, 128, 256, 512, 1024, 2048]


def checkpoint_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the public Cnn14 checkpoint and its shape, written out independently of the plugin."""
    shapes: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
        "logmel_extractor.melW": (513, 64),
    }

    def bn(prefix: str, n: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{part}"] = (n,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn0", 64)
    cin = 1
    for i, width in enumerate(WIDTHS, 1):
        shapes[f"conv_block{i}.conv1.weight"] = (width, cin, 3, 3)
        shapes[f"conv_block{i}.conv2.weight"] = (width, width, 3, 3)
        bn(f"conv_block{i}.bn1", width)
        bn(f"conv_block{i}.bn2", width)
        cin = width
    shapes.update({"fc1.weight": (2048, 2048), "fc1.bias": (2048,), "fc_audioset.weight": (527, 2048),
                   "fc_audioset.bias": (527,)})
    return shapes


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in checkpoint_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = 1 + torch.rand(shape, generator=gen)
        elif name.endswith(("running_mean", "bias")):
            state[name] = 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(".weight") and len(shape) == 1:  # BatchNorm scale
            state[name] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:])
            state[name] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
    # bn0 sees dB values: give it statistics of that range.
    state["bn0.running_mean"] = torch.full((64,), -40.0)
    state["bn0.running_var"] = torch.full((64,), 400.0)
    return state


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("panns") / "panns-cnn14"
    folder.mkdir()
    torch.save({"model": random_state(), "iteration": 660000}, folder / WEIGHTS)
    return folder


@pytest.fixture(scope="module")
def clf(weights_dir):
    (weights_dir / "classifier.json").write_text('{"classifier": "panns-cnn14"}')
    return load_classifier(weights_dir, device="cpu")


def test_the_plugin_layout_is_the_checkpoint_layout():
    from mka_plugins.classifiers.panns import IGNORED_KEYS, Cnn14

    with torch.device("meta"):
        own = {name: tuple(t.shape) for name, t in Cnn14().state_dict().items()}
    expected = {k: v for k, v in checkpoint_shapes().items() if k not in IGNORED_KEYS}
    assert own == expected


def test_loaded_from_a_folder_it_gives_2048_embeddings_and_527_probabilities(clf):
    assert clf.name == "panns-cnn14" and clf.multi_label
    assert clf.classes[0] == "class_0" and len(clf.classes) == 527
    rng = np.random.default_rng(0)
    waves = [torch.from_numpy(rng.standard_normal(16000).astype(np.float32) * 0.1),
             torch.sin(torch.arange(2000) * 2 * math.pi * 440 / 16000)]  # short: zero-padded to 0.32 s
    out = clf.embed(waves)
    assert out.embeddings.shape == (2, 2048) and out.probabilities.shape == (2, 527)
    assert torch.isfinite(out.embeddings).all() and (out.embeddings >= 0).all()  # after ReLU
    assert ((out.probabilities >= 0) & (out.probabilities <= 1)).all()
    assert not torch.allclose(out.probabilities[0], out.probabilities[1])


def test_a_clip_scores_the_same_alone_and_in_a_mixed_batch(clf):
    gen = torch.Generator().manual_seed(3)
    a, b = 0.2 * torch.randn(8000, generator=gen), 0.2 * torch.randn(6000, generator=gen)
    together = clf.embed([a, b, a])
    alone = clf.embed([b])
    torch.testing.assert_close(together.embeddings[1], alone.embeddings[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(together.probabilities[1], alone.probabilities[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together.embeddings[0], together.embeddings[2])


def test_class_names_come_from_audiosets_csv_by_name_through_mka_home(weights_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "panns-cnn14").symlink_to(weights_dir, target_is_directory=True)
    monkeypatch.setenv("MKA_HOME", str(home))
    csv_path = weights_dir / "class_labels_indices.csv"
    lines = ["index,mid,display_name", '0,/m/09x0r,"Speech"', '1,/m/05zppz,"Male speech, man speaking"']
    lines += [f"{i},/m/x{i},Class {i}" for i in range(2, 527)]
    csv_path.write_text("\n".join(lines) + "\n")
    try:
        loaded = load_classifier("panns-cnn14", device="cpu")
        assert loaded.classes[:3] == ["Speech", "Male speech, man speaking", "Class 2"]
        csv_path.write_text("index,mid,display_name\n0,/m/a,A\n")
        with pytest.raises(MkaError, match="527 classes"):
            load_classifier("panns-cnn14", device="cpu")
    finally:
        csv_path.unlink()


def test_a_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MKA_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsError) as info:
        load_classifier("panns-cnn14", device="cpu")
    message = str(info.value)
    assert str(tmp_path / "home" / "weights" / "panns-cnn14" / WEIGHTS) in message
    assert "\n" not in message and message.count(". ") == 0


def test_wrong_keys_and_shapes_are_one_sentence(tmp_path):
    from mka_plugins.classifiers.panns import build_cnn14

    small = {k: torch.zeros(v) for k, v in checkpoint_shapes().items() if not k.startswith("conv_block6")}
    with pytest.raises(WeightsError, match=r"missing tensor\(s\) \['conv_block6"):
        build_cnn14(small, "ckpt.pth")
    state = {k: torch.zeros(v) for k, v in checkpoint_shapes().items()}
    with pytest.raises(WeightsError, match=r"unknown tensor\(s\) \['att_block"):
        build_cnn14({**state, "att_block.att.weight": torch.zeros(1)}, "ckpt.pth")
    state["fc1.weight"] = torch.zeros(2048, 512)
    with pytest.raises(WeightsError, match=r"'fc1.weight' has shape \[2048, 512\], Cnn14 needs \[2048, 2048\]"):
        build_cnn14(state, "ckpt.pth")
    (tmp_path / "classifier.json").write_text('{"classifier": "panns-cnn14", "weights": "small.pth"}')
    torch.save({"model": {"fc1.weight": torch.zeros(2, 2)}}, tmp_path / "small.pth")
    with pytest.raises(WeightsError, match="is not a PANNs Cnn14 checkpoint") as info:
        load_classifier(tmp_path, device="cpu")
    assert "\n" not in str(info.value)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": {"fc1.bias": torch.zeros(2048)}, "payload": _RunsCode(marker)}, tmp_path / WEIGHTS)
    (tmp_path / "classifier.json").write_text('{"classifier": "panns-cnn14"}')
    with pytest.raises(WeightsError, match="Refusing to load"):
        load_classifier(tmp_path, device="cpu")
    assert not marker.exists()


# -- the front end against numpy -----------------------------------------------------------------


def numpy_log_mel(wave: np.ndarray, sr: int = 32000, n_fft: int = 1024, hop: int = 320, n_mels: int = 64,
                  fmin: float = 50.0, fmax: float = 14000.0) -> np.ndarray:
    """Centred reflect-padded STFT, periodic Hann, power, Slaney mel filters (Slaney area norm), 10 log10."""
    wave = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = 1 + (wave.size - n_fft) // hop
    stack = np.stack([wave[i * hop : i * hop + n_fft] * window for i in range(frames)])
    power = np.abs(np.fft.rfft(stack, axis=1)) ** 2  # [frames, 513]

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000.0, f * 3.0 / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0))

    def mel_to_hz(m):
        return np.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising, falling = (freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)
        fb[:, m] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return 10.0 * np.log10(np.maximum(power @ fb, 1e-10))


def test_the_mel_front_end_matches_numpy_on_a_sine():
    from mka_plugins.classifiers.panns import LogMel32k

    t = np.arange(32000) / 32000
    wave = 0.5 * np.sin(2 * np.pi * 1234.5 * t) + 0.05 * np.sin(2 * np.pi * 6000.0 * t)
    reference = numpy_log_mel(wave)
    ours = LogMel32k().log_mel_32k(torch.from_numpy(wave).float()[None])[0].double().numpy()
    assert ours.shape == reference.shape == (101, 64)
    # Tolerance (float32 here against float64 numpy): 0.001 dB on every bin within 60 dB of the
    # loudest, 0.1 dB on all bins (the faintest sit near float32 rounding of the window's leakage).
    loud = reference > reference.max() - 60
    assert loud.mean() > 0.1
    assert np.abs(ours - reference)[loud].max() < 1e-3
    assert np.abs(ours - reference).max() < 0.1
    assert (ours.argmax(axis=1) == reference.argmax(axis=1)).all()
    # Through the 16 kHz input (resampled to 32 kHz), the same tone lands in the same mel bin.
    t16 = torch.arange(16000) / 16000
    via16 = LogMel32k()(0.5 * torch.sin(2 * math.pi * 1234.5 * t16)[None])[0]
    assert via16.shape == (101, 64)
    assert int(via16[50].argmax()) == int(reference[50].argmax())


# -- mka eval ------------------------------------------------------------------------------------


def test_mka_eval_scores_generated_audio_through_panns(weights_dir, tmp_path):
    from training.data.manifest import ManifestRow, write_manifest

    folder = tmp_path / "clf"
    folder.mkdir()
    (folder / WEIGHTS).symlink_to(weights_dir / WEIGHTS)
    (folder / "classifier.json").write_text('{"classifier": "panns-cnn14"}')
    names = ["tone"] + [f"c{i}" for i in range(1, 527)]
    (folder / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f"{i},/m/{i},{n}\n" for i, n in enumerate(names)))
    rng = np.random.default_rng(1)
    refs, gen = tmp_path / "refs", tmp_path / "gen"
    refs.mkdir(), gen.mkdir()
    rows = []
    for i in range(3):
        t = np.arange(6400) / 16000
        sf.write(refs / f"r{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype(np.float32), 16000)
        sf.write(gen / f"r{i}.wav", (0.1 * rng.standard_normal(6400)).astype(np.float32), 16000)
        rows.append(ManifestRow(name=f"r{i}", dataset="test", caption="a tone", audio_path=str(refs / f"r{i}.wav"),
                                extra={"labels": "tone"}))
    manifest = write_manifest(tmp_path / "refs.tsv", rows)
    report = tmp_path / "report.json"
    result = run_cli("eval", "--manifest", manifest, "--generated", gen, "--classifier", folder, "--out", report,
                     "--clap", "none", "--quiet")
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["count"] == 3
    scores = data["metrics"]
    assert math.isfinite(scores["fd"]) and scores["fd"] > 0
    assert math.isfinite(scores["kl"]) and scores["kl"] >= 0
    assert 0.0 <= scores["accuracy"] <= 1.0
