"""Decode untrusted image bytes into the 224x224 RGB array the model expects."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgsearch.errors import RowFailure, RowStatus

TARGET_SIZE = (224, 224)
DEFAULT_MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_KEYED_TRANSPARENCY_MODES = frozenset({"P", "1", "L", "RGB"})  # a tRNS colour that Pillow can turn to alpha
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)

# open_image's pixel cap (IMAGE_MAX_PIXELS) is the decompression-bomb guard, checked from the header
# before any pixel is decoded, with one reason and message for every size. Pillow's own guard would
# add a second one: a DecompressionBombWarning printed past 89 M pixels and an error with another
# message past 179 M. Setting its limit to None (a plain module attribute, read at each open) turns
# only that off; the cap below always runs.
Image.MAX_IMAGE_PIXELS = None


def decode_failure(reason: str, message: str) -> RowFailure:
    """A decode-stage failure with a reason code for the error histogram."""
    return RowFailure(RowStatus.DECODE_FAILED, reason, message)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check format and pixel count before any pixel is decoded."""
    if not data:
        raise decode_failure("empty", "the file is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise decode_failure("not_an_image", "the bytes are not an image Pillow recognises") from None
    if image.format not in ACCEPTED_FORMATS:
        raise decode_failure("unsupported_format", f"image format {image.format} is not accepted")
    width, height = image.size
    if width * height > max_pixels:
        raise decode_failure(
            "too_many_pixels",
            f"{width}x{height} = {width * height} pixels exceeds the cap of {max_pixels}",
        )
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB; alpha (or a transparent colour key) is composited onto white."""
    if image.mode in _KEYED_TRANSPARENCY_MODES and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in _SIXTEEN_BIT_MODES:
        return _scaled_to_rgb(np.asarray(image, dtype=np.float64), 255.0 / 65535.0)
    if image.mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 32-bit integer or float grayscale (range unknown: guessed from the data) to 8 bits."""
    pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
    top = float(pixels.max()) if pixels.size else 0.0
    if image.mode == "F" and top <= 1.0:
        scale = 255.0
    elif top <= 255.0:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0 if top <= 65535.0 else 255.0 / top
    return _scaled_to_rgb(pixels, scale)


def _scaled_to_rgb(pixels: np.ndarray, scale: float) -> Image.Image:
    eight_bit = np.clip(pixels * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(eight_bit, mode="L").convert("RGB")


def apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF orientation tag; a broken EXIF block is ignored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF must not fail an otherwise good image
        return image


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return a (224, 224, 3) uint8 RGB array, or raise RowFailure(decode_failed)."""
    try:
        image = open_image(data, max_pixels)
        if image.format == "JPEG":
            image.draft("RGB", TARGET_SIZE)
        image.load()
        image = to_rgb(apply_orientation(image))
        image = image.resize(TARGET_SIZE, Image.Resampling.BILINEAR, reducing_gap=3.0)
    except RowFailure:
        raise
    except _DECODE_ERRORS as exc:
        raise decode_failure(_reason_for(exc, data), f"cannot decode image: {exc}") from None
    return np.asarray(image, dtype=np.uint8)


def _reason_for(exc: BaseException, data: bytes) -> str:
    """A stable short code for a Pillow exception, for the error histogram."""
    if isinstance(exc, Image.DecompressionBombError):
        return "too_many_pixels"
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError) or _riff_is_short(data):
        return "truncated"
    return "corrupt"


def _riff_is_short(data: bytes) -> bool:
    """A WebP (RIFF) file shorter than the size its header declares: libwebp only says 'corrupt'."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    (declared,) = struct.unpack("<I", data[4:8])
    return len(data) < declared + 8
