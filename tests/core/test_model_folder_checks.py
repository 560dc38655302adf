"""A model folder's model_index.json is checked where it enters (issue 19, item 5): one sentence per problem."""

from __future__ import annotations

import json
import shutil

import pytest

from mka_core.errors import WeightsError
from mka_core.pipeline import Pipeline
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture
def model(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def edit_index(folder, change) -> None:
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    change(index["pipeline"])
    path.write_text(json.dumps(index))


def test_an_invalid_value_is_one_sentence_naming_the_field(model):
    edit_index(model, lambda p: p["mel"].update(sample_rate=0))
    with pytest.raises(WeightsError) as info:
        Pipeline.from_pretrained(model, device="cpu")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "https://" not in message
    assert "model_index.json" in message and "'mel.sample_rate'" in message and "greater than 0" in message

    result = run_cli("generate", "--model", model, "a bell", "--steps", "1", "--duration", "0.5",
                     "-o", model.parent / "x.wav")
    assert_clean_error(result, "mel.sample_rate", "greater than 0")
    assert result.returncode == 2 and "pydantic" not in result.stderr


def test_a_recorded_space_that_fits_neither_conditioner_nor_unet_is_refused(model):
    edit_index(model, lambda p: p["space"].update(dim=999))
    with pytest.raises(WeightsError) as info:
        Pipeline.from_pretrained(model, device="cpu")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "999-d" in message and "conditioner 'bert' writes into" in message and "32-d" in message
    assert "U-Net takes 32-d context" in message


def test_a_recorded_space_name_of_another_conditioner_is_refused(model):
    edit_index(model, lambda p: p["space"].update(name="somebody-elses-space"))
    with pytest.raises(WeightsError, match="somebody-elses-space.*conditioner 'bert' writes into"):
        Pipeline.from_pretrained(model, device="cpu")


def test_an_untouched_folder_still_loads(model):
    pipe = Pipeline.from_pretrained(model, device="cpu")
    assert pipe.config.space.dim == pipe.unet.config.context_dim == 32


def test_a_damaged_component_config_is_one_sentence(model):
    path = model / "unet" / "config.json"
    data = json.loads(path.read_text())
    data["config"]["model_channels"] = -3
    path.write_text(json.dumps(data))
    with pytest.raises(WeightsError) as info:
        Pipeline.from_pretrained(model, device="cpu")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "'model_channels'" in message and "unet" in message


@pytest.mark.parametrize("content", ["[1, 2]", '{"format": "mka-pipeline", "format_version": "one"}'])
def test_an_index_of_the_wrong_shape_is_one_sentence(model, content):
    (model / "model_index.json").write_text(content)
    with pytest.raises(WeightsError) as info:
        Pipeline.from_pretrained(model, device="cpu")
    assert len(str(info.value).splitlines()) == 1
