"""Bad masks (through `mka generate --mask` and the parser) and bad manifests: one sentence, no output."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mka_core.errors import InputError
from tests.conftest import assert_clean_error
from tests.reliability import corpus
from tests.reliability.conftest import generate, leftovers


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# -- masks ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    """Half a second of audio: 8000 samples, 31 mel frames, 32 model frames (tiny preset)."""
    return corpus.silence_wav(tmp_path_factory.mktemp("init") / "street.wav", 0.5)


def inpaint(model, init, mask, out):
    return generate(model, "rain", "--init", init, "--mask", mask, "--task-option", "variant=blend",
                    "-o", out / "x.wav")


def write_npy(path, array):
    np.save(path, array)
    return path


def write_png(path, array):
    Image.fromarray(array).save(path)
    return path


MASKS = {
    "npy-wrong-height": (lambda d: write_npy(d / "m.npy", np.ones((7, 32), np.float32)), ["m.npy", "shape [7, 32]", "80"]),
    "npy-too-wide": (lambda d: write_npy(d / "m.npy", np.ones((80, 500), np.float32)), ["shape [80, 500]"]),
    "npy-too-narrow": (lambda d: write_npy(d / "m.npy", np.ones(3, np.float32)), ["shape [3]"]),
    "npy-3d": (lambda d: write_npy(d / "m.npy", np.ones((2, 80, 32), np.float32)), ["shape [2, 80, 32]"]),
    "npy-strings": (lambda d: write_npy(d / "m.npy", np.full((80, 32), "x")), ["m.npy", "values"]),
    "npy-nan": (lambda d: write_npy(d / "m.npy", np.full((80, 32), np.nan, np.float32)), ["NaN"]),
    "npy-out-of-range": (lambda d: write_npy(d / "m.npy", np.full((80, 32), 3.0, np.float32)), ["between 0"]),
    "npy-all-zero": (lambda d: write_npy(d / "m.npy", np.zeros((80, 32), np.float32)), ["selects nothing"]),
    "npy-garbage": (lambda d: (d / "m.npy").write_bytes(b"\x93NUMPY garbage") and d / "m.npy", ["m.npy"]),
    "png-wrong-size": (lambda d: write_png(d / "m.png", np.full((10, 10), 255, np.uint8)), ["10x10", "80 pixels high"]),
    "png-garbage": (lambda d: (d / "m.png").write_bytes(b"\x89PNG\r\n\x1a\nnope") and d / "m.png", ["m.png"]),
    "missing-file": (lambda d: d / "nothing.npy", ["does not exist"]),
    "range-past-end": (lambda d: "0.2-0.9", ["ends at 0.9 s", "0.500 s long"]),
    "range-reversed": (lambda d: "0.4-0.1", ["start"]),
    "range-malformed": (lambda d: "from 1 to 2", ["malformed"]),
    "range-empty-item": (lambda d: "0.1-0.2,,0.3-0.4", ["empty range"]),
    "box-above-nyquist": (lambda d: "0.1-0.2@100-20k", ["above", "8000 Hz"]),
    "box-no-bins": (lambda d: "0.1-0.2@1000-1001", ["no mel bin"]),
}


#: Cases also run through the CLI (every case runs through the parser below): one per kind of input.
CLI_CASES = ["npy-wrong-height", "npy-too-wide", "npy-garbage", "npy-all-zero", "png-wrong-size", "missing-file",
             "range-past-end", "range-malformed", "box-above-nyquist"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_masks_through_the_cli_are_one_sentence(tiny_model_dir, init, tmp_path, out, case):
    build, fragments = MASKS[case]
    result = inpaint(tiny_model_dir, init, build(tmp_path), out)
    assert_clean_error(result, *fragments)
    assert leftovers(out) == []


@pytest.mark.parametrize("case", list(MASKS))
def test_bad_masks_are_one_input_error(tmp_path, case):
    """The same geometry as the CLI runs above (0.5 s: 8000 samples, 32 frames, 80 bins)."""
    from mka_core.masks import mask_from_input

    build, fragments = MASKS[case]
    with pytest.raises(InputError) as caught:
        mask_from_input(build(tmp_path), frames=32, n_mels=80, num_samples=8000, sample_rate=16000, hop_length=256,
                        fmax=8000.0)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)


@pytest.mark.parametrize("mask", ["mask.npy", "mask.png", "0.1-0.2@0-2k,0.3-0.4"])
def test_masks_of_every_accepted_form_work(tiny_model_dir, init, tmp_path, out, mask):
    grid = np.zeros((80, 31), np.float32)  # the audio's own mel length (31) is accepted as well as 32
    grid[:, 5:12] = 1
    write_npy(tmp_path / "mask.npy", grid)
    write_png(tmp_path / "mask.png", (grid[::-1] * 255).astype(np.uint8))
    result = inpaint(tiny_model_dir, init, tmp_path / mask if mask.startswith("mask.") else mask, out)
    assert result.returncode == 0, result.stderr
    assert sf.info(str(out / "x.wav")).frames == 8000


# -- manifests -------------------------------------------------------------------------------------------------


def test_manifests_with_missing_columns_or_stray_fields(tmp_path):
    from training.data.manifest import read_manifest

    cases = {
        "name\tcaption\n": "audio_path",
        "name\tdataset\taudio_path\tduration\n": "caption",
        "": "lacks the column",
        "name,caption,audio_path\nx,y,z.wav\n": "tab-separated",
        "name\tcaption\taudio_path\nx\ty\tz.wav\textra\n": "Line 2",
        "name\tcaption\taudio_path\tduration\nx\ty\tz.wav\tten\n": "'ten'",
    }
    for text, fragment in cases.items():
        path = tmp_path / "m.tsv"
        path.write_text(text)
        with pytest.raises(InputError, match=fragment):
            read_manifest(path)
    (tmp_path / "latin.tsv").write_bytes("name\tcaption\taudio_path\nx\tcaf\xe9\tz.wav\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_manifest(tmp_path / "latin.tsv")
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path / "absent.tsv")


def test_manifest_paths_resolve_against_the_manifest_and_bad_ones_are_reported_by_prepare(tmp_path):
    from tests.conftest import run_cli
    from training.data.manifest import read_manifest

    corpus_dir = tmp_path / "corpus"
    (corpus_dir / "clips").mkdir(parents=True)
    corpus.write_wav(corpus_dir / "clips" / "ok.wav", corpus.tone(1.0))
    manifest = corpus_dir / "m.tsv"
    manifest.write_text("name\tcaption\taudio_path\n"
                        "ok\ta tone\tclips/ok.wav\n"
                        "gone\ta lost file\tclips/missing.wav\n"
                        "elsewhere\ta tone\t/nonexistent/dir/x.wav\n"
                        "blank\tno path\t\n")
    rows = read_manifest(manifest)
    assert rows[0].audio_path == str(corpus_dir / "clips" / "ok.wav")
    assert rows[1].audio_path == str(corpus_dir / "clips" / "missing.wav")
    assert rows[3].audio_path == ""
    # `mka data prepare` keeps the good row and names every bad one with its reason.
    result = run_cli("data", "prepare", "--manifest", manifest, "--out", tmp_path / "prepared", "--workers", "1",
                     "--quiet")
    assert result.returncode == 0, result.stderr
    dropped = {line.split("\t")[0]: line for line in (tmp_path / "prepared" / "dropped.tsv").read_text().splitlines()}
    assert {"gone", "elsewhere", "blank"} <= set(dropped)
    assert "missing" in dropped["gone"] and "missing" in dropped["elsewhere"]
    assert [r.name for r in read_manifest(tmp_path / "prepared" / "manifest.tsv")] == ["ok"]
