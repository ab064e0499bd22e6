"""One way to turn an image file into what a model sees: `load_image(path, channels)`.

Training on an image folder and `effzoo predict` both read files through here, so a model is
asked about a photo in the form it learned from. What it does, and why:

* **EXIF orientation** is applied (`ImageOps.exif_transpose`): a phone photo stored sideways with
  an "rotate 90°" tag is shown upright by every viewer, so that is what the image *is*.
* **Transparency** (RGBA, LA, PA, a palette or grayscale PNG with a transparent colour) is
  composited onto white. The colour under a fully transparent pixel is whatever the encoder left
  there (often black), so dropping alpha, as a bare `convert("RGB")` does, makes the content
  depend on the tool that wrote the file; white is what a viewer shows on a page.
* **16-bit and 32-bit integer grayscale** ("I;16", "I;16B", "I"): PIL's `convert("L")` *clips*
  these at 255, turning almost every pixel white. They are scaled instead, 0..65535 to 0..255
  (values of "I" images are taken as 16-bit samples, which is how PIL opens 16-bit PNG and TIFF).
* **Palette, CMYK, YCbCr, bilevel** and the rest: PIL's own conversion to RGB or L.
* Then the model's channels: 1 -> "L" (ITU-R 601-2 luma), 3 -> "RGB" (a grayscale image is
  replicated into three equal channels).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

# Modes whose samples exceed 8 bits and that PIL's convert("L") would clip.
WIDE_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# The errors PIL raises for a file it cannot read (missing, truncated, not an image, too large).
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def load_image(path: str | os.PathLike, channels: int) -> Image.Image:
    """Decode `path` fully (so a truncated file fails here) into an 'L' (channels=1) or 'RGB' (3) image."""
    with Image.open(path) as img:
        img.load()
        # The opened file object is released when `with` ends; the decoded copy lives on.
        return to_model_mode(img, channels, copy=False)


def to_model_mode(img: Image.Image, channels: int, *, copy: bool = True) -> Image.Image:
    """`img` upright and in the model's mode ('L' or 'RGB'), converted as described in the module docstring.

    `copy=False` may rotate `img` itself in place (for images this module just decoded); the
    default leaves a caller's image untouched.
    """
    if channels not in (1, 3):
        raise ValueError(f"a model takes images with 1 (grayscale) or 3 (RGB) channels, not {channels}")
    if copy:
        img = ImageOps.exif_transpose(img)
    else:
        ImageOps.exif_transpose(img, in_place=True)
    img = _flatten(img)
    return img.convert("L" if channels == 1 else "RGB")


def _flatten(img: Image.Image) -> Image.Image:
    """An 8-bit 'L' or 'RGB' image with the same content: alpha composited on white, wide samples scaled."""
    if img.mode in WIDE_GRAY_MODES:
        samples = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.round(np.clip(samples, 0, 65535) / 257.0).astype(np.uint8), "L")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba)
        return flat.convert("L" if img.mode in ("L", "LA", "La") else "RGB")
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1", "F"):
        return img.convert("L")  # bilevel: 0 and 255; float: PIL clips to 0..255
    return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV
