"""decode_image and image_to_tensor: every mode becomes RGB; broken files fail loudly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.data.images import decode_image, image_to_tensor
from headstart.errors import DataError
from headstart.preprocessing import PreprocessSpec


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "mode",
    ["L", "RGBA", "P", "CMYK", "LA", "1", "RGB"],
)
def test_modes_decode_to_rgb(tmp_path: Path, mode: str) -> None:
    ext = ".jpg" if mode == "CMYK" else ".png"
    path = _save(Image.new(mode, (40, 30)), tmp_path / f"img{ext}")
    image = decode_image(path)
    assert image.mode == "RGB"
    assert image.size == (40, 30)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode_image(_save(rgba, tmp_path / "a.png"))
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert image.getpixel((1, 1)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((0, 0), 1)
    image = decode_image(_save(palette, tmp_path / "p.png", transparency=0))
    assert image.getpixel((0, 0)) == (10, 20, 30)
    assert image.getpixel((1, 1)) == (255, 255, 255)


def test_16bit_keeps_range(tmp_path: Path) -> None:
    values = np.array([[0, 128 * 257, 65535]], dtype=np.uint16)
    image = decode_image(_save(Image.fromarray(values), tmp_path / "deep.png"))
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128,) * 3, (255,) * 3]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = _save(Image.fromarray(pixels), tmp_path / "rot.jpg", exif=exif, quality=95)
    image = decode_image(path)
    assert image.size == (20, 40)
    top, bottom = np.asarray(image)[5, 10], np.asarray(image)[35, 10]
    assert top[0] > 200 and top[2] < 50  # the left (red) side is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_png_named_jpg_decodes_by_content(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (8, 6), (1, 2, 3)), tmp_path / "really_png.jpg", format="PNG")
    assert decode_image(path).getpixel((0, 0)) == (1, 2, 3)


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG")
    path = tmp_path / "broken.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError, match="broken.jpg"):
        decode_image(path)


def test_decompression_bomb_rejected(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (40, 32)), tmp_path / "big.png")
    with pytest.raises(DataError, match="max_pixels"):
        decode_image(path, max_pixels=100)
    assert decode_image(path, max_pixels=40 * 32).size == (40, 32)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such file"), (b"hello", "not a supported image format")],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=reason):
        decode_image(path)


def test_bytes_errors_say_bytes() -> None:
    with pytest.raises(DataError, match="<bytes>"):
        decode_image(b"\x89PNG\r\n\x1a\n broken")


def test_image_to_tensor_bytes_equals_path(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    path = _save(Image.fromarray(noise), tmp_path / "n.png")
    spec = PreprocessSpec(input_size=16, crop_pct=1.0)
    from_path = image_to_tensor(path, spec)
    from_bytes = image_to_tensor(path.read_bytes(), spec)
    assert from_path.shape == (3, 16, 16) and from_path.dtype == torch.float32
    assert torch.equal(from_path, from_bytes)
