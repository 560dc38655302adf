"""Turning whatever a user passes as an image into an 8-bit RGB Pillow image.

Accepted: a file path, a ``PIL.Image.Image`` or a uint8 array ``[H, W]``, ``[H, W, 1]``,
``[H, W, 3]`` or ``[H, W, 4]``. Decisions (documented in docs/clip-conditioners.md):

* transparency (RGBA, LA, PA, P or L with a transparent colour) is composited on **white**,
  so what is drawn stays visible and hidden pixels under alpha 0 never leak in;
* 16-bit greyscale (``I;16*``, and ``I``, which Pillow uses for 16-bit PNGs) is scaled
  0..65535 -> 0..255; float ``F`` images are read as 0..1; everything else goes through
  Pillow's own conversion (L, 1, P, CMYK, YCbCr, LAB, HSV);
* the EXIF orientation of photos is applied;
* files with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by default, about
  89.5 MP) are refused before decoding: they are possible decompression bombs. Images above
  :data:`REDUCE_ABOVE_PIXELS` are shrunk by an integer factor while (JPEG) or right after
  decoding so the shorter side stays at least 4x the model's input; smaller images reach
  open_clip's transform untouched, so they match open_clip's own preprocessing exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mka_core.errors import InputError

#: Larger images are reduced before the CLIP transform (16.7 MP, 4096 x 4096).
REDUCE_ABOVE_PIXELS = 4096 * 4096
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def describe(item: Any) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"the {type(item).__name__} input"


def load_image(item: Any, target_size: int) -> Any:
    """Any accepted image input -> an RGB ``PIL.Image.Image``; bad inputs raise InputError."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        image = open_image_file(Path(item), target_size)
    elif isinstance(item, Image.Image):
        image = item
    elif isinstance(item, np.ndarray):
        image = image_from_array(item)
    else:
        raise InputError(
            f"An image input must be a file path, a PIL image or a uint8 array, not {type(item).__name__}."
        )
    if image.width == 0 or image.height == 0:
        raise InputError(f"{describe(item)} is an empty image ({image.width}x{image.height} pixels).")
    try:
        image.load()
        image = to_rgb(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{describe(item)} could not be decoded as an image ({exc}).") from exc
    return reduce_large(image, target_size)


def open_image_file(path: Path, target_size: int) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"Image file {path} does not exist.")
    if not path.is_file():
        raise InputError(f"{path} is not a file; pass an image file.")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; refuse the whole range instead.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"{path} has more than {limit:,} pixels (Pillow's decompression-bomb limit, PIL.Image.MAX_IMAGE_PIXELS); "
            "downscale it before using it as a condition."
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path} is not a readable image file ({exc.__class__.__name__}); pass a PNG, JPEG or similar.") from exc
    with image:
        if image.width * image.height > REDUCE_ABOVE_PIXELS and image.format == "JPEG":
            # Decode straight at a reduced scale (1/2, 1/4 or 1/8): the full image never exists in memory.
            factor = reduction_factor(image.width, image.height, target_size)
            image.draft("RGB", (max(1, image.width // factor), max(1, image.height // factor)))
        try:
            image.load()
            # exif_transpose returns a new image, so the file can be closed here.
            return ImageOps.exif_transpose(image)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{path} is truncated or corrupt ({exc}); pass an intact image file.") from exc


def image_from_array(array: np.ndarray) -> Any:
    from PIL import Image

    if array.dtype != np.uint8:
        raise InputError(f"An image array must be uint8 (0..255), not {array.dtype}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"An image array must be [H, W], [H, W, 3] or [H, W, 4], not {list(array.shape)}.")
    if array.size == 0:
        raise InputError(f"The image array is empty ({array.shape[1]}x{array.shape[0]} pixels).")
    return Image.fromarray(np.ascontiguousarray(array))


def to_rgb(image: Any) -> Any:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the rules)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float32)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32))
        grey = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def reduction_factor(width: int, height: int, target_size: int) -> int:
    """The integer shrink that keeps the shorter side at least 4x ``target_size``."""
    return max(1, min(width, height) // (4 * max(1, target_size)))


def reduce_large(image: Any, target_size: int) -> Any:
    if image.width * image.height <= REDUCE_ABOVE_PIXELS:
        return image
    factor = reduction_factor(image.width, image.height, target_size)
    return image.reduce(factor) if factor > 1 else image
