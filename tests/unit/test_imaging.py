"""Decoding of real-world image variants and hostile files (pure Pillow, no services)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch.errors import RowFailure, RowStatus
from imgsearch.imaging import TARGET_SIZE, decode_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(mode: str = "RGB", size=(320, 240)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    y = np.linspace(0, 255, size[1], dtype=np.uint8)
    rgb = np.stack([*np.meshgrid(x, y), np.full((size[1], size[0]), 90, np.uint8)], axis=-1)
    return Image.fromarray(rgb).convert(mode)


def decode_fails(data: bytes, reason: str, **kwargs) -> RowFailure:
    with pytest.raises(RowFailure) as caught:
        decode_image(data, **kwargs)
    assert caught.value.status is RowStatus.DECODE_FAILED
    assert caught.value.reason == reason, caught.value.message
    return caught.value


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "JPEG"),
        ("L", "PNG"),
        ("CMYK", "JPEG"),
        ("RGB", "WEBP"),
        ("RGB", "BMP"),
        ("RGB", "TIFF"),
        ("1", "PNG"),
    ],
)
def test_common_modes_and_formats_decode_to_rgb_224(mode, fmt):
    pixels = decode_image(encode(gradient(mode), fmt))
    assert pixels.shape == (*TARGET_SIZE, 3) and pixels.dtype == np.uint8
    assert pixels.std() > 10


def test_transparent_palette_png_is_composited_on_white():
    image = Image.new("P", (100, 100), 0)
    image.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    pixels = decode_image(encode(image, "PNG", transparency=0))
    assert (pixels == 255).all()


def test_rgba_alpha_is_composited_on_white():
    pixels = decode_image(encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "PNG"))
    assert (pixels == 255).all()


def test_16_bit_grayscale_is_scaled_not_clipped():
    array = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (64, 1))
    pixels = decode_image(encode(Image.fromarray(array), "PNG"))
    assert pixels.min() < 10 and pixels.max() > 245 and 100 < pixels.mean() < 155


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (64, 64), color) for color in ((0, 0, 255), (255, 0, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    pixels = decode_image(data)
    assert pixels[..., 2].mean() > 200 and pixels[..., 0].mean() < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue, right half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    pixels = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    top, bottom = pixels[:50].mean(axis=(0, 1)), pixels[-50:].mean(axis=(0, 1))
    assert top[2] > 200 and bottom[0] > 200  # blue moved to the top, red to the bottom


def test_empty_file():
    decode_fails(b"", "empty")


def test_html_served_as_jpeg():
    decode_fails(b"<!doctype html><html><body>Not found</body></html>", "not_an_image")


def test_truncated_jpeg():
    data = encode(gradient(size=(800, 600)), "JPEG", quality=95)
    decode_fails(data[: len(data) // 2], "truncated")


def test_decompression_bomb_is_refused_before_decoding():
    data = encode(Image.new("L", (8000, 8000)), "PNG")
    failure = decode_fails(data, "too_many_pixels", max_pixels=10_000_000)
    assert "64000000" in failure.message


def test_unsupported_format():
    decode_fails(encode(gradient(size=(64, 64)), "ICO"), "unsupported_format")


def test_same_bytes_same_pixels():
    data = encode(gradient(), "JPEG")
    assert np.array_equal(decode_image(data), decode_image(data))


@pytest.mark.parametrize(("mode", "key"), [("L", 0), ("RGB", (0, 0, 0)), ("1", 0)])
def test_transparent_colour_key_is_composited_on_white(mode, key):
    image = Image.new(mode, (64, 64), key)
    image.paste(Image.new(mode, (32, 64), 255 if mode != "RGB" else (255, 0, 0)), (32, 0))
    pixels = decode_image(encode(image, "PNG", transparency=key))
    assert (pixels[:, :100] == 255).all()  # the keyed (transparent) half is white, not black


def test_16_bit_image_is_scaled_by_its_full_range():
    dark = np.full((64, 64), 255, dtype=np.uint16)  # 255 of 65535: nearly black, as any viewer shows it
    assert decode_image(encode(Image.fromarray(dark), "PNG")).max() <= 1


def test_truncated_webp():
    data = encode(gradient(size=(400, 300)), "WEBP", quality=90)
    decode_fails(data[: len(data) // 2], "truncated")


@pytest.mark.parametrize(
    "side",
    [10_000, 15_000],  # 100 M pixels (past Pillow's warning limit), 225 M (past its error limit)
)
def test_every_bomb_size_gets_one_reason_and_message_without_pillow_warning(side, recwarn):
    data = encode(Image.new("1", (side, side)), "PNG")  # 1-bit zeros: a few kB of PNG
    failure = decode_fails(data, "too_many_pixels")
    assert failure.message == f"{side}x{side} = {side * side} pixels exceeds the cap of 40000000"
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
