"""decode_image and image_to_tensor: every mode becomes RGB; broken files fail loudly."""

from __future__ import annotations

import io
import struct
import zlib
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


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 30, 200)).save(buffer, format="PNG")  # a few hundred bytes
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(20_000, 1), (1, 20_000), (1700, 100)])
def test_thin_and_wide_images_are_refused_from_the_header(size: tuple[int, int]) -> None:
    with pytest.raises(DataError, match=r"too thin or too wide: .* over the limit of 16 .*crop or"):
        decode_image(_png(size))


@pytest.mark.parametrize("size", [(256, 16), (16, 256), (4000, 1000)])
def test_panoramas_and_banners_up_to_16_to_1_decode(size: tuple[int, int]) -> None:
    assert decode_image(_png(size)).size == size


def test_the_resized_size_is_capped_before_any_allocation() -> None:
    spec = PreprocessSpec(input_size=64, crop_pct=1.0)
    with pytest.raises(DataError) as info:  # 1600 pixels, but 1024x64 once resized
        image_to_tensor(_png((160, 10)), spec, max_pixels=50_000)
    assert str(info.value) == (
        "cannot read image <bytes>: 160x10 pixels: resizing its short side to 64 px would make "
        "1024x64 = 65536 pixels, over the limit of 50000 (--max-pixels); crop or pad the image."
    )
    assert image_to_tensor(_png((160, 10)), spec, max_pixels=70_000).shape == (3, 64, 64)
    assert decode_image(_png((160, 10)), max_pixels=50_000, resize_to=None).size == (160, 10)


def test_the_aspect_limit_fits_the_largest_model_size() -> None:
    from headstart.config import MAX_IMAGE_SIZE
    from headstart.data.images import DEFAULT_MAX_PIXELS, MAX_ASPECT_RATIO

    largest = PreprocessSpec(input_size=MAX_IMAGE_SIZE).resize_size  # crop 0.875: 2341 px
    assert MAX_ASPECT_RATIO * largest * largest <= DEFAULT_MAX_PIXELS


def test_max_pixels_decides_not_pillows_own_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse 40x32 itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert decode_image(_png((40, 32))).size == (40, 32)
        with pytest.raises(DataError, match=r"over the limit of 1000 .*--max-pixels"):
            decode_image(_png((40, 32)), max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's setting is put back


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_huge_header_gets_our_message_not_pillows() -> None:
    with pytest.raises(DataError) as info:  # Pillow alone refuses it (over twice its limit)
        decode_image(_png_header(30_000, 30_000))
    message = str(info.value)
    assert "30000x30000 = 900000000 pixels is over the limit of 89478485" in message
    assert "--max-pixels" in message and "\n" not in message


def test_pillows_limit_is_restored_after_decodes_in_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_345_678)
    data = [_png((40, 32)), _png((30_000, 1)), b"not an image"] * 40

    def decode(source: bytes) -> str:
        try:
            return str(decode_image(source).size)
        except DataError as exc:
            return str(exc)[:20]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(decode, data))
    assert results[:3] == ["(40, 32)", "cannot read image <b", "cannot read image <b"]
    assert Image.MAX_IMAGE_PIXELS == 12_345_678
