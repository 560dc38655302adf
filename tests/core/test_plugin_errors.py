"""Errors that come out of a third-party plugin are named as that plugin's (issue 19, item 4).

The plugin is a real installed distribution (a fake dist-info on sys.path, loaded through the
entry-point path), written the way docs/plugins.md teaches: see tests/core/fake_letters.py.
"""

from __future__ import annotations

import sys

import pytest
import torch

from mka_core.errors import InputError, MkaError, PluginError, validation_problems, validation_sentence
from mka_core.plugins import manager
from mka_core.plugins.faults import plugin_fault
from tests.conftest import assert_clean_error, run_cli
from tests.core import fake_letters
from tests.plugins.fake_dists import on_sys_path


@pytest.fixture
def letters(tmp_path, monkeypatch):
    root = tmp_path / "site"
    fake_letters.install(root)
    monkeypatch.setenv("MKA_LOAD_PLUGINS", fake_letters.DISTRIBUTIONS)
    with on_sys_path(root):
        manager.reset_plugins()
        yield root
    manager.reset_plugins()


def one_error_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("mka: loading")]
    assert len(lines) == 1 and lines[0].startswith("mka: error: "), result.stderr
    return lines[0]


# -- a bad option --------------------------------------------------------------------------------------


def test_a_rejected_option_names_the_option_the_plugin_and_its_distribution(letters, tmp_path):
    result = run_cli("new-model", "--preset", "tiny", "--cond", "letter-counts", "--cond-option", "bogus=1",
                     "--out", tmp_path / "m")
    line = one_error_line(result)
    assert_clean_error(result, "letter-counts", "fake-letters", "0.3.0", "bogus", "max_words")
    assert "https://" not in line and "pydantic" not in line.lower()
    assert not (tmp_path / "m").exists()


def test_an_out_of_range_option_is_the_plugins_error_too(letters, tmp_path):
    result = run_cli("new-model", "--preset", "tiny", "--cond", "letter-counts", "--cond-option", "max_words=0",
                     "--out", tmp_path / "m")
    one_error_line(result)
    assert_clean_error(result, "letter-counts", "fake-letters", "'max_words'", "greater than or equal to 1")


def test_the_python_api_raises_the_same_sentence(letters):
    from mka_core.presets import build_pipeline

    with pytest.raises(PluginError, match=r"conditioner 'letter-counts' from the distribution 'fake-letters' 0\.3\.0"):
        build_pipeline("tiny", cond="letter-counts", cond_options={"bogus": 1})
    cls = manager.get("conditioner", "letter-counts")
    with pytest.raises(InputError, match="bogus"):  # the caller's input, and the plugin's error
        cls(bogus=1)  # the base class validates the options it is given


def test_options_given_when_switching_conditioners_are_checked_before_loading(letters, tmp_path):
    from mka_core.pipeline import Pipeline
    from mka_core.presets import build_pipeline

    build_pipeline("tiny", cond="letter-counts").save_pretrained(tmp_path / "m")
    pipe = Pipeline.from_pretrained(tmp_path / "m", device="cpu")
    built = len(sys.modules["fake_letters"].BUILT)
    with pytest.raises(PluginError, match="fake-letters.*'max_words'"):
        pipe.conditioner_for("letter-counts", {"max_words": "many"})
    assert len(sys.modules["fake_letters"].BUILT) == built


def test_generate_cond_option_rejected_by_the_plugin_is_one_sentence(letters, tmp_path):
    from mka_core.presets import build_pipeline

    build_pipeline("tiny", cond="letter-counts").save_pretrained(tmp_path / "m")
    result = run_cli("generate", "--model", tmp_path / "m", "--cond-option", "bogus=1", "a dog", "--steps", "1",
                     "--duration", "0.5", "-o", tmp_path / "out.wav")
    one_error_line(result)
    assert_clean_error(result, "letter-counts", "fake-letters", "0.3.0", "'bogus'")
    assert not (tmp_path / "out.wav").exists()


# -- an import failure -----------------------------------------------------------------------------------


def test_a_plugin_that_failed_to_import_is_named_when_its_name_is_used(letters, tmp_path):
    result = run_cli("new-model", "--preset", "tiny", "--cond", "broken-letters", "--out", tmp_path / "m")
    one_error_line(result)
    assert_clean_error(result, "broken-letters", "fake-broken-letters", "0.1", "failed to import",
                       "not_an_installed_dependency_of_mka")
    # The rest of mka keeps working, the other plugin included.
    assert "letter-counts" in manager.names("conditioner")


def test_an_unknown_name_without_broken_plugins_stays_a_plain_unknown(tmp_path):
    result = run_cli("new-model", "--preset", "tiny", "--cond", "no-such-conditioner", "--out", tmp_path / "m")
    one_error_line(result)
    assert_clean_error(result, "Unknown conditioner 'no-such-conditioner'")


# -- an exception inside the plugin ------------------------------------------------------------------


def test_an_exception_in_encode_is_the_plugins_fault(letters, tmp_path):
    from mka_core.pipeline import Pipeline
    from mka_core.presets import build_pipeline

    build_pipeline("tiny", cond="letter-counts").save_pretrained(tmp_path / "m")
    pipe = Pipeline.from_pretrained(tmp_path / "m", device="cpu")
    with pytest.raises(RuntimeError) as info:
        pipe(["a fox"], duration=0.5, steps=1, seed=0)
    fault = plugin_fault(info.value)
    assert isinstance(fault, PluginError) and fault.exit_code == 2
    message = str(fault)
    assert "conditioner 'letter-counts' from the distribution 'fake-letters' 0.3.0" in message
    assert "failed in encode" in message and "letter table overflow" in message
    assert len(message.splitlines()) == 1


def test_the_cli_reports_an_exception_in_encode_in_one_sentence(letters, tmp_path):
    from mka_core.presets import build_pipeline

    build_pipeline("tiny", cond="letter-counts").save_pretrained(tmp_path / "m")
    result = run_cli("generate", "--model", tmp_path / "m", "a fox", "--duration", "0.5", "--steps", "1",
                     "--seed", "0", "-o", tmp_path / "out.wav")
    one_error_line(result)
    assert_clean_error(result, "letter-counts", "fake-letters", "encode", "letter table overflow")
    assert not (tmp_path / "out.wav").exists()


def test_mkas_own_faults_are_still_internal_errors(monkeypatch):
    import mka_core.cli.info as info

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug of mka's")

    monkeypatch.setattr(info, "describe_preset", broken)
    result = run_cli("info", "--json")
    assert result.returncode == 1
    assert "mka: internal error: ZeroDivisionError" in result.stderr and "bug in mka" in result.stderr

    from mka_core.conditioning import Condition

    with pytest.raises(ValueError) as raised:
        Condition(torch.zeros(2), torch.zeros(2))  # raised in mka_core: never a plugin's
    assert plugin_fault(raised.value) is None
    assert plugin_fault(PluginError("already a sentence")) is None


def test_provenance_names_the_distribution(letters):
    cls = manager.get("conditioner", "letter-counts")
    registration = manager.provenance(cls)
    assert (registration.distribution, registration.version, registration.kind) == ("fake-letters", "0.3.0", "conditioner")
    assert manager.provenance(cls()) is registration
    assert manager.provenance(int) is None


# -- the one helper for pydantic errors --------------------------------------------------------------


def test_validation_sentence_is_one_line_naming_the_fields():
    from pydantic import Field, ValidationError

    from mka_core.config import StrictModel

    class Inner(StrictModel):
        rate: int = Field(16000, gt=0)

    class Outer(StrictModel):
        mel: Inner = Inner()
        name: str = "x"

    with pytest.raises(ValidationError) as info:
        Outer(mel={"rate": 0}, bogus="a\nb", name=1)
    sentence = validation_sentence(info.value, "settings in test.json")
    assert sentence.startswith("Invalid settings in test.json: ") and sentence.endswith(".")
    assert "'mel.rate' input should be greater than 0" in sentence
    assert "'bogus' is not a known field" in sentence and "'name'" in sentence
    assert "\n" not in sentence and "https://" not in sentence
    assert validation_problems(info.value, limit=1).endswith("(and 2 more problems)")
    assert validation_problems(ValueError("plain\nsecond line")) == "plain"
    assert issubclass(PluginError, MkaError)
