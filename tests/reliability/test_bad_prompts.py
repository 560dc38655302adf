"""Bad prompts and prompt files through `mka generate`: handled correctly, or one sentence and no output."""

from __future__ import annotations

import pytest
import soundfile as sf

from tests.conftest import assert_clean_error
from tests.reliability import corpus
from tests.reliability.conftest import generate, leftovers


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# -- prompts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["bert", "clip"])
def test_a_prompt_of_100k_characters_is_truncated_with_one_warning(tiny_model_dir, request, out, which):
    model = tiny_model_dir if which == "bert" else request.getfixturevalue("tiny_clip_model_dir")
    result = generate(model, corpus.long_text(), "--duration", "0.3", "-o", out)
    assert result.returncode == 0, result.stderr
    (wav,) = [p for p in out.iterdir() if p.suffix == ".wav"]
    assert len(wav.name) < 80  # the file is named by a short slug of the prompt
    assert sf.info(str(wav)).frames == 4800
    # Whatever the encoder says about the cut is one `mka: warning:` line, never Python's warning format.
    # (mka's own status line while the model loads aside.)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("mka: loading the model")]
    assert all(line.startswith("mka: warning:") for line in lines), result.stderr
    if which == "bert":
        assert len(lines) == 1 and "truncated" in lines[0]


def test_a_prompt_file_that_is_not_utf8_names_the_line(tiny_model_dir, tmp_path, out):
    result = generate(tiny_model_dir, "--prompts", corpus.non_utf8_prompts(tmp_path / "prompts.txt"), "-o", out)
    assert_clean_error(result, "Line 2", "prompts.txt", "not UTF-8", "0xe9")
    assert leftovers(out) == []


@pytest.mark.parametrize("content,fragments", [
    ("a bell\n\nrain\n".encode(), ["Line 2", "empty"]),
    (b"", ["no prompts"]),
    ("a bell\n".encode("utf-16"), ["Line 1", "not UTF-8"]),
], ids=["empty-line", "empty-file", "utf16"])
def test_bad_prompt_files(tiny_model_dir, tmp_path, out, content, fragments):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(content)
    assert_clean_error(generate(tiny_model_dir, "--prompts", prompts, "-o", out), "prompts.txt", *fragments)
    assert leftovers(out) == []


def test_a_folder_as_prompt_file(tiny_model_dir, tmp_path, out):
    assert_clean_error(generate(tiny_model_dir, "--prompts", tmp_path, "-o", out), "folder")
    assert leftovers(out) == []


def test_a_utf8_prompt_file_with_a_byte_order_mark_works(tiny_model_dir, tmp_path, out):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("\ufeffun café bruyant\n".encode())
    result = generate(tiny_model_dir, "--prompts", prompts, "--duration", "0.3", "-o", out)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.glob("*.wav")] == ["un-caf-bruyant_0.wav"]
