"""clip-text and clip-image on the tiny random OpenCLIP model (offline, CPU)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mka_core.conditioning import EmbeddingSpace
from mka_core.errors import InputError, WeightsError
from mka_plugins.conditioners import _image_input
from mka_plugins.conditioners._image_input import load_image
from mka_plugins.conditioners.clip import ClipImageConditioner, ClipTextConditioner, register_conditioners
from mka_plugins.conditioners.clip_video import ClipVideoConditioner

open_clip = pytest.importorskip("open_clip")

DIM = 32  # the tiny model's embedding width
TEXTS = ["a dog barks", "rain on a tin roof", "", "a very long caption " * 30]


@pytest.fixture(scope="module")
def text_cond() -> ClipTextConditioner:
    return ClipTextConditioner.build_random("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_dir(text_cond, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip-text")
    text_cond.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_cond(tiny_dir) -> ClipImageConditioner:
    return ClipImageConditioner.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def reference(tiny_dir):
    """The same weights through open_clip's own API, independent of the conditioners."""
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_dir}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{tiny_dir}")


def pictures() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40 + 7 * i, 56 - 3 * i, 3), dtype=np.uint8) for i in range(3)]


def assert_unit_global(cond, batch: int) -> None:
    assert cond.embeds.shape == (batch, 1, DIM)
    assert cond.mask.shape == (batch, 1) and cond.mask.dtype == torch.bool and bool(cond.mask.all())
    torch.testing.assert_close(cond.embeds.float().norm(dim=-1), torch.ones(batch, 1), atol=1e-5, rtol=0)


# -- registration, options, space -----------------------------------------------------------------


def test_plugin_module_registers_both_conditioners():
    registered = []
    register_conditioners(registered.append)
    assert registered == [ClipTextConditioner, ClipImageConditioner]
    assert (ClipTextConditioner.input_kind, ClipImageConditioner.input_kind) == ("text", "image")


def test_entry_point_makes_them_available():
    from mka_core.plugins import manager

    assert manager.get("conditioner", "clip-text") is ClipTextConditioner
    assert manager.get("conditioner", "clip-image") is ClipImageConditioner


def test_space_is_known_from_options_without_loading():
    space = ClipImageConditioner.space_from_options(ClipImageConditioner.Options())
    assert space == EmbeddingSpace(name="openclip:ViT-H-14/laion2b_s32b_b79k", dim=1024, tokens="global")
    assert ClipTextConditioner.space_from_options(ClipTextConditioner.Options(model="ViT-B-32", pretrained="x")).dim == 512


def test_unknown_option_is_rejected():
    with pytest.raises(Exception, match="extra"):
        ClipTextConditioner.Options(modle="ViT-H-14")


def test_tiny_space_matches_options_and_model(text_cond):
    assert text_cond.space == EmbeddingSpace(name="openclip:mka-tiny-clip/random-seed0", dim=DIM, tokens="global")
    assert ClipTextConditioner.space_from_options(text_cond.options) == text_cond.space


# -- weights resolution ---------------------------------------------------------------------------


def test_offline_missing_weights_names_files_and_folder():
    from mka_core.weights import mka_home

    with pytest.raises(WeightsError) as info:
        ClipImageConditioner()
    message = str(info.value)
    assert "open_clip_config.json" in message and "open_clip_model.safetensors" in message
    assert str(mka_home() / "weights") in message


def test_missing_local_folder_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="open_clip_model.safetensors"):
        ClipTextConditioner(weights=str(tmp_path / "nowhere"))


def test_tiny_model_without_weights_explains_itself():
    with pytest.raises(WeightsError, match="build_random"):
        ClipTextConditioner(model="mka-tiny-clip", pretrained="random-seed0")


def test_folder_of_another_width_is_refused(tiny_dir):
    with pytest.raises(WeightsError, match="1024"):
        ClipImageConditioner(model="ViT-H-14", weights=str(tiny_dir))


def test_user_cache_is_used_when_weights_is_none(tiny_dir, monkeypatch, tmp_path):
    import shutil

    monkeypatch.setenv("MKA_HOME", str(tmp_path))
    cache = tmp_path / "weights" / "openclip--mka-tiny-clip--random-seed0"
    cache.mkdir(parents=True)
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        shutil.copy(tiny_dir / name, cache / name)
    cond = ClipTextConditioner(model="mka-tiny-clip", pretrained="random-seed0")
    torch.testing.assert_close(cond(["x"]).embeds, ClipTextConditioner.from_pretrained(tiny_dir)(["x"]).embeds, atol=0, rtol=0)


def test_build_random_rejects_unknown_preset_and_fixed_options():
    with pytest.raises(InputError, match="tiny"):
        ClipTextConditioner.build_random("huge")
    with pytest.raises(InputError, match="model"):
        ClipTextConditioner.build_random("tiny", model="ViT-H-14")


# -- clip-text ---------------------------------------------------------------------------------------


def test_text_prepare_is_cpu_token_ids(text_cond):
    tokens = text_cond.prepare(TEXTS)
    assert tokens.dtype == torch.long and tokens.device.type == "cpu" and tokens.shape == (len(TEXTS), 77)
    assert tokens[2, :2].tolist() == [49406, 49407]  # "" is start + end of text


def test_text_encoding_matches_open_clip(text_cond, reference):
    model, _, tokenizer = reference
    cond = text_cond(TEXTS)
    assert_unit_global(cond, len(TEXTS))
    with torch.no_grad():
        expected = model.encode_text(tokenizer(TEXTS), normalize=True)
    torch.testing.assert_close(cond.embeds[:, 0], expected, atol=1e-6, rtol=0)


def test_text_batch_equals_singles(text_cond):
    batch = text_cond(TEXTS).embeds
    singles = torch.cat([text_cond([t]).embeds for t in TEXTS])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)


def test_text_rejects_non_strings_and_empty_batches(text_cond):
    with pytest.raises(InputError, match="strings"):
        text_cond.prepare([3])
    with pytest.raises(InputError, match="no texts"):
        text_cond.prepare([])


def test_build_random_is_deterministic_and_seeded(text_cond):
    again = ClipTextConditioner.build_random("tiny", seed=0)
    other = ClipTextConditioner.build_random("tiny", seed=1)
    torch.testing.assert_close(again(TEXTS).embeds, text_cond(TEXTS).embeds, atol=0, rtol=0)
    assert other.space != text_cond.space
    assert (other(TEXTS).embeds - text_cond(TEXTS).embeds).abs().max() > 1e-3


def test_build_random_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ClipTextConditioner.build_random("tiny", seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


# -- null condition ----------------------------------------------------------------------------------


def test_null_condition_is_normalised_text_embedding_of_empty_string(text_cond, image_cond, reference):
    model, _, tokenizer = reference
    with torch.no_grad():
        expected = model.encode_text(tokenizer([""]), normalize=True)
    for cond in (text_cond, image_cond):
        null = cond.null_condition(3)
        assert_unit_global(null, 3)
        torch.testing.assert_close(null.embeds, expected[None].expand(3, 1, DIM), atol=1e-6, rtol=0)
    torch.testing.assert_close(text_cond([""]).embeds, text_cond.null_condition(1).embeds, atol=1e-6, rtol=0)


# -- persistence and interchangeability --------------------------------------------------------------


def test_save_and_reload_is_exact(text_cond, image_cond, tiny_dir, tmp_path):
    reloaded_text = ClipTextConditioner.from_pretrained(tiny_dir)
    torch.testing.assert_close(reloaded_text(TEXTS).embeds, text_cond(TEXTS).embeds, atol=0, rtol=0)
    # clip-image holds only the image tower: saving copies the folder's full weights.
    image_cond.save_pretrained(tmp_path / "image")
    reloaded_image = ClipImageConditioner.from_pretrained(tmp_path / "image")
    torch.testing.assert_close(reloaded_image(pictures()).embeds, image_cond(pictures()).embeds, atol=0, rtol=0)
    torch.testing.assert_close(reloaded_image.null_embedding, image_cond.null_embedding, atol=0, rtol=0)
    assert reloaded_image.options == image_cond.options.model_copy(update={"weights": str(tmp_path / "image")})


def test_folder_saved_by_clip_text_serves_all_three(text_cond, tiny_dir):
    image = ClipImageConditioner.from_pretrained(tiny_dir)
    video = ClipVideoConditioner.from_pretrained(tiny_dir)
    assert text_cond.space == image.space == video.space
    assert video.options.frames == 4


def test_unused_tower_is_dropped_after_loading(image_cond, tiny_dir):
    text = ClipTextConditioner.from_pretrained(tiny_dir)
    assert not hasattr(text.clip, "visual")
    assert not hasattr(image_cond.clip, "transformer") and not hasattr(image_cond.clip, "token_embedding")
    visual = sum(p.numel() for p in image_cond.clip.visual.parameters())
    assert sum(p.numel() for p in image_cond.parameters()) == visual


def test_encoder_is_frozen_and_stays_in_eval(image_cond):
    image_cond.train()
    assert not image_cond.clip.training
    assert image_cond.trainable_parameters() == []
    assert not any(p.requires_grad for p in image_cond.parameters())
    image_cond.eval()


def test_condition_follows_device_and_dtype(tiny_dir):
    cond = ClipImageConditioner.from_pretrained(tiny_dir).to(torch.float64)
    out = cond(pictures()[:2])
    assert out.embeds.dtype == torch.float64 and out.embeds.device == cond.device
    assert cond.null_condition(2).embeds.dtype == torch.float64


# -- clip-image --------------------------------------------------------------------------------------


def test_image_encoding_matches_open_clip(image_cond, reference):
    model, preprocess, _ = reference
    images = pictures()
    cond = image_cond(images)
    assert_unit_global(cond, len(images))
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.fromarray(a)) for a in images])
        expected = model.encode_image(pixels, normalize=True)
    torch.testing.assert_close(cond.embeds[:, 0], expected, atol=1e-6, rtol=0)


def test_image_prepare_is_cpu_pixels(image_cond):
    pixels = image_cond.prepare(pictures())
    assert pixels.shape == (3, 3, 32, 32) and pixels.dtype == torch.float32 and pixels.device.type == "cpu"


def test_image_batch_equals_singles(image_cond):
    images = pictures()
    batch = image_cond(images).embeds
    singles = torch.cat([image_cond([im]).embeds for im in images])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)


def test_paths_pil_images_and_arrays_agree(image_cond, tmp_path):
    array = pictures()[0]
    Image.fromarray(array).save(tmp_path / "p.png")
    out = image_cond([array, Image.fromarray(array), str(tmp_path / "p.png"), tmp_path / "p.png"]).embeds
    for i in range(1, 4):
        torch.testing.assert_close(out[i], out[0], atol=1e-6, rtol=0)


def save(image: Image.Image, path, fmt: str = "PNG"):
    image.save(path, fmt)
    return path


def test_every_image_mode_is_read(image_cond, tmp_path):
    rgb = Image.fromarray(pictures()[1])
    grey = np.asarray(rgb.convert("L"))
    files = {
        "RGB": save(rgb, tmp_path / "rgb.png"),
        "RGBA": save(rgb.convert("RGBA"), tmp_path / "rgba.png"),
        "L": save(rgb.convert("L"), tmp_path / "l.png"),
        "P": save(rgb.convert("P"), tmp_path / "p.png"),
        "CMYK": save(rgb.convert("CMYK"), tmp_path / "cmyk.tif", "TIFF"),
        "I;16": save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "i16.png"),
    }
    for mode, path in files.items():
        with Image.open(path) as opened:
            assert opened.mode == mode
    out = image_cond(list(files.values())).embeds
    assert_unit_global(image_cond(list(files.values())), len(files))
    embeds = dict(zip(files, out))
    # Opaque alpha, a lossless palette round trip and exactly scaled 16-bit data change nothing.
    torch.testing.assert_close(embeds["RGBA"], embeds["RGB"], atol=1e-6, rtol=0)
    torch.testing.assert_close(embeds["I;16"], embeds["L"], atol=1e-6, rtol=0)
    expected_p = image_cond([rgb.convert("P").convert("RGB")]).embeds[0]
    torch.testing.assert_close(embeds["P"], expected_p, atol=1e-6, rtol=0)
    expected_cmyk = image_cond([rgb.convert("CMYK").convert("RGB")]).embeds[0]
    torch.testing.assert_close(embeds["CMYK"], expected_cmyk, atol=1e-6, rtol=0)


def test_sixteen_bit_is_scaled_not_clipped():
    grey16 = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    assert np.asarray(load_image(grey16, 32))[0, :, 0].tolist() == [0, 100, 255]


def test_transparency_is_composited_on_white(image_cond):
    invisible = np.zeros((40, 40, 4), dtype=np.uint8)  # black, fully transparent
    rgb = np.asarray(load_image(invisible, 32))
    assert (rgb == 255).all()
    half = np.dstack([np.zeros((40, 40, 3), np.uint8), np.full((40, 40), 128, np.uint8)])
    assert np.asarray(load_image(half, 32))[0, 0].tolist() == [127, 127, 127]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (60, 20), (10, 200, 30)).save(tmp_path / "o.jpg", exif=exif)
    assert load_image(tmp_path / "o.jpg", 32).size == (20, 60)


@pytest.mark.parametrize("empty", [Image.new("RGB", (0, 0)), np.zeros((0, 0, 3), dtype=np.uint8)])
def test_empty_image_is_an_input_error(image_cond, empty):
    with pytest.raises(InputError, match="empty"):
        image_cond([empty])


def test_unreadable_images_are_input_errors(image_cond, tmp_path):
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    (tmp_path / "notes.jpg").write_text("not an image")
    png = io.BytesIO()
    Image.fromarray(pictures()[0]).save(png, "PNG")
    (tmp_path / "cut.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    for name, pattern in [("noise.png", "not a readable image"), ("notes.jpg", "not a readable image"),
                          ("cut.png", "truncated or corrupt"), ("missing.png", "does not exist")]:
        with pytest.raises(InputError, match=pattern):
            image_cond([tmp_path / name])
    with pytest.raises(InputError, match="not a file"):
        image_cond([tmp_path])


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.uint8), 7])
def test_wrong_input_types_are_input_errors(image_cond, bad):
    with pytest.raises(InputError):
        image_cond([bad])


def test_decompression_bomb_sizes_are_refused(monkeypatch, tmp_path):
    # Pillow's own limit decides; a small limit stands in for the real 89.5 MP.
    Image.new("L", (40, 40)).save(tmp_path / "warn.png")  # 1600 px: Pillow would only warn
    Image.new("L", (50, 50)).save(tmp_path / "bomb.png")  # 2500 px: Pillow raises
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for name in ("warn.png", "bomb.png"):
        with pytest.raises(InputError, match="decompression-bomb limit"):
            load_image(tmp_path / name, 32)


def test_fifty_megapixel_jpeg_is_decoded_reduced(image_cond, tmp_path):
    Image.new("RGB", (10000, 5000), (120, 30, 200)).save(tmp_path / "big.jpg", quality=90)
    image = load_image(tmp_path / "big.jpg", image_cond.image_size)
    assert min(image.size) >= 4 * image_cond.image_size and image.size[0] * image.size[1] < 2_000_000
    assert_unit_global(image_cond([tmp_path / "big.jpg"]), 1)


def test_large_images_are_reduced_to_a_safe_size(monkeypatch):
    monkeypatch.setattr(_image_input, "REDUCE_ABOVE_PIXELS", 100_000)
    big = Image.fromarray(np.zeros((600, 900, 3), np.uint8))
    assert load_image(big, 32).size == (900 // 4, 600 // 4)  # shorter side 150 >= 4 * 32
    small = Image.fromarray(np.zeros((300, 300, 3), np.uint8))
    assert load_image(small, 32).size == (300, 300)


def test_l2_normalise_of_pooled_features_is_unit(image_cond):
    feats = image_cond.encode_pixels(image_cond.prepare(pictures()))
    assert feats.shape == (3, DIM)
    torch.testing.assert_close(image_cond.global_condition(feats).embeds[:, 0], F.normalize(feats, dim=-1))
