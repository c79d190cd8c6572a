"""Image conversions at the data edge: files and PIL images in, float tensors in [-1, 1] out (and back).

Owns every decision about pixels before they enter the package:

- mode conversion to 8-bit RGB: L, 1, P, CMYK, YCbCr -> RGB; 16-bit grey (I;16*, I) scaled to 8 bit
  by v8 = round(v16 * 255 / 65535) (not clipped); embedded ICC profiles converted to sRGB;
- transparency (RGBA, LA, PA, La, RGBa, P or L with a transparent colour) composited on a background;
- resize of the shorter side to the stage resolution (Lanczos when shrinking, which antialiases;
  bicubic when enlarging) fused with the centre crop;
- PIL <-> float tensor [3, H, W] in [-1, 1] (x = u8 / 127.5 - 1).

Inside the package images are float NCHW in [-1, 1] (docs/design.md); nothing else converts.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

from imagegen.utils.images import from_uint8

RGB = tuple[int, int, int]

BACKGROUNDS: dict[str, RGB] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}

# Modes to_rgb converts; anything else (F, LAB, HSV, ...) is refused as unsupported.
SUPPORTED_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
    | {"I", "I;16", "I;16L", "I;16B", "I;16N"}
)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_ICC_MODES = {"RGB": "RGB", "L": "RGB", "CMYK": "RGB", "RGBA": "RGBA"}  # input mode -> output mode


class UnsupportedImageError(ValueError):
    """An image whose pixel mode cannot be turned into RGB without guessing (e.g. float F, LAB)."""


def parse_color(spec: str) -> RGB:
    """Background colour from a name ("white", "black", "gray") or "#rrggbb"; returns uint8 (r, g, b)."""
    text = spec.strip().lower()
    if text in BACKGROUNDS:
        return BACKGROUNDS[text]
    if len(text) == 7 and text.startswith("#"):
        try:
            return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
        except ValueError:
            pass
    raise ValueError(f"background colour {spec!r}: expected one of {sorted(BACKGROUNDS)} or '#rrggbb'")


def load_image(path: str | Path, background: RGB = (255, 255, 255), min_side: int = 0) -> Image.Image:
    """Decode an image file to 8-bit RGB, upright (EXIF orientation applied), alpha composited.

    `min_side` > 0 lets JPEG decode at a reduced DCT scale that still keeps both sides >= min_side.
    Raises OSError / PIL errors for unreadable files and UnsupportedImageError for unsupported modes.
    """
    with Image.open(path) as image:
        if min_side > 0 and image.format == "JPEG":
            image.draft(None, (min_side, min_side))
        image.load()
        upright = ImageOps.exif_transpose(image)
        return to_rgb(upright, background)


def to_rgb(image: Image.Image, background: RGB = (255, 255, 255)) -> Image.Image:
    """Convert any supported mode to 8-bit RGB; transparency is composited on `background`."""
    if image.mode not in SUPPORTED_MODES:
        raise UnsupportedImageError(f"unsupported image mode {image.mode!r}")
    if image.mode.startswith("I"):
        image = sixteen_bit_to_l(image)
    image = _icc_to_srgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return composite(image.convert("RGBA"), background)
    return image if image.mode == "RGB" else image.convert("RGB")


def sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """16-bit grey (I;16, I;16B, I with values in [0, 65535]) -> 8-bit L, v8 = round(v * 255 / 65535).

    Mode I (32-bit int, how Pillow may open 16-bit PNG/TIFF) is read as 16-bit samples; values
    outside [0, 65535] are clamped.
    """
    values = np.asarray(image).astype(np.int64)
    values = np.clip(values, 0, 65535)
    eight_bit = (values * 255 + 32767) // 65535  # integer round-half-up of v * 255 / 65535
    return Image.fromarray(eight_bit.astype(np.uint8))  # 2-D uint8 -> L


def composite(image: Image.Image, background: RGB) -> Image.Image:
    """Alpha-composite an RGBA image over a solid colour: out = a * rgb + (1 - a) * background."""
    canvas = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(canvas, image).convert("RGB")


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=32)
def _icc_transform(icc: bytes, in_mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from an embedded profile to sRGB; None when it already is sRGB."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if ImageCms.getProfileDescription(profile).strip().lower().startswith("srgb"):
        return None
    return ImageCms.buildTransform(profile, _srgb_profile(), in_mode, _ICC_MODES[in_mode])


def _icc_to_srgb(image: Image.Image) -> Image.Image:
    """Apply the embedded ICC profile (e.g. Adobe RGB, a CMYK press profile) so pixels are sRGB.

    A broken or mismatched profile is ignored (the pixels are then taken as sRGB) rather than
    dropping an otherwise valid image.
    """
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in _ICC_MODES:
        return image
    try:
        transform = _icc_transform(bytes(icc), image.mode)
        return image if transform is None else ImageCms.applyTransform(image, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Scale the shorter side to `resolution` and keep the central `resolution` x `resolution` square.

    Done as one resample of the centred square box of side min(W, H), which equals resize-then-crop
    without an intermediate image. Lanczos when shrinking (antialiased), bicubic when enlarging.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    resample = Image.Resampling.LANCZOS if side >= resolution else Image.Resampling.BICUBIC
    return image.resize((resolution, resolution), resample=resample, box=box)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float32 tensor [3, H, W] in [-1, 1] (x = u8 / 127.5 - 1)."""
    if image.mode != "RGB":
        raise ValueError(f"pil_to_tensor expects an RGB image, got mode {image.mode!r}; use to_rgb first")
    return from_uint8(np.array(image, dtype=np.uint8))  # [H, W, 3] uint8 -> [3, H, W]
