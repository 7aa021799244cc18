"""The one place where image files or bytes are decoded, and turned into model inputs.

Decoding is by content (a PNG named ``.jpg`` is fine), never pads truncated files, applies the EXIF
orientation and always returns an 8-bit RGB image. Transparent pixels are composited on white, the
usual background of product photos and drawings (dropping alpha would expose arbitrary colours that
were hidden under transparent pixels).

Sizes are checked from the header, before any pixel is allocated: at most ``max_pixels`` pixels
(Pillow's own bomb limit is off while the header is read, so this check and its message decide),
an aspect ratio of at most ``MAX_ASPECT_RATIO``, and, when the caller says to what short side it
will resize the image, at most ``max_pixels`` pixels after that resize.
"""

from __future__ import annotations

import functools
import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps

from headstart.defaults import MAX_PIXELS
from headstart.errors import DataError
from headstart.preprocessing import PreprocessSpec

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT_RATIO",
    "ImageSource",
    "check_size",
    "decode_image",
    "image_to_tensor",
    "is_image_file",
]

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
"""File name extensions treated as images (compared in lower case)."""

DEFAULT_MAX_PIXELS = MAX_PIXELS
"""Largest width * height decoded (Pillow's own limit); larger images are rejected as bombs."""

MAX_ASPECT_RATIO = 16
"""Images whose long side is more than this many times their short side are refused.

Evaluation resizes the short side up to the model's size, which stretches the long side by the
same factor: a 20000x1 image at 224 px would become 5120000x256 (5 GB). At 16:1 the largest resize
the settings allow (image size 2048 at crop 0.875: a 2341 px short side) stays at 16 x 2341^2 =
88 M pixels, under ``DEFAULT_MAX_PIXELS``, so an image the audit accepts fits any model size;
panoramas (2:1 to 10:1) and web banners (728x90, 8:1) stay usable.
"""

# Decoders that may run on user files. Others (EPS calls Ghostscript, ...) are never tried.
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")

ImageSource = str | Path | bytes


def is_image_file(path: str | Path) -> bool:
    """Return whether ``path`` has one of ``IMAGE_EXTENSIONS`` (the file is not opened)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


class _PillowLimitOff:
    """Pillow's own decompression-bomb limit, off while ``decode_image`` reads headers.

    ``decode_image`` applies ``max_pixels`` itself, right after the header is read, with a message
    naming ``--max-pixels``; Pillow's limit would refuse large headers first, with its own words,
    whatever ``max_pixels`` says. Decoding runs in threads: the first thread in saves Pillow's
    setting and the last one out puts it back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved: int | None = None

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            self._inside += 1

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                Image.MAX_IMAGE_PIXELS = self._saved


_PILLOW_LIMIT_OFF = _PillowLimitOff()


def decode_image(
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, resize_to: int | None = None
) -> Image.Image:
    """Decode an image file or its bytes into a fully loaded 8-bit RGB image.

    Args:
        source: A file path, or the encoded bytes of an image.
        max_pixels: Larger images (width * height) are rejected from the header, unread.
        resize_to: The short side the caller will resize the image to (``resize_size`` of the
            model's spec); the resized image must also fit ``max_pixels``. None: not checked.

    Returns:
        An RGB image with its EXIF orientation applied.

    Raises:
        DataError: The file is missing, is not a supported image, is truncated, is too large
            (before or after the resize) or is too thin or too wide (``MAX_ASPECT_RATIO``).
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise DataError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so broken images would be padded "
            "silently; set it back to False."
        )
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        with _PILLOW_LIMIT_OFF:
            opened = Image.open(fp, formats=_FORMATS)
        with opened as image:
            check_size(image.size, name, max_pixels=max_pixels, resize_to=resize_to)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"cannot read image {name}: no such file; check the path.") from None
    except IsADirectoryError:
        raise DataError(f"cannot read image {name}: it is a folder, not a file.") from None
    except Image.UnidentifiedImageError:
        raise DataError(
            f"cannot read image {name}: not a supported image format "
            f"({', '.join(_FORMATS)}); convert it or remove it."
        ) from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"cannot read image {name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a broken file
        reason = str(exc) or type(exc).__name__
        raise DataError(
            f"cannot read image {name}: {reason}; the file is corrupt or truncated, "
            "re-export it or remove it."
        ) from None


def check_size(
    size: tuple[int, int], name: str, *, max_pixels: int, resize_to: int | None = None
) -> None:
    """Raise unless an image of ``size`` (width, height) may be decoded (see ``decode_image``).

    Raises:
        DataError: Too many pixels, no pixels, too many after resizing the short side to
            ``resize_to``, or an aspect ratio over ``MAX_ASPECT_RATIO``.
    """
    width, height = size
    if width * height > max_pixels:
        raise DataError(
            f"cannot read image {name}: {width}x{height} = {width * height} pixels is over the "
            f"limit of {max_pixels} (a possible decompression bomb); shrink the image or raise "
            "--max-pixels (max_pixels in Python)."
        )
    if width < 1 or height < 1:
        raise DataError(f"cannot read image {name}: it has no pixels ({width}x{height}).")
    short, long = sorted(size)
    if resize_to is not None:
        stretched = int(resize_to * long / short)  # as torchvision's Resize computes it
        if stretched * resize_to > max_pixels:
            new = (stretched, resize_to) if width >= height else (resize_to, stretched)
            raise DataError(
                f"cannot read image {name}: {width}x{height} pixels: resizing its short side to "
                f"{resize_to} px would make {new[0]}x{new[1]} = {new[0] * new[1]} pixels, over "
                f"the limit of {max_pixels} (--max-pixels); crop or pad the image."
            )
    if long > MAX_ASPECT_RATIO * short:
        raise DataError(
            f"cannot read image {name}: {width}x{height} pixels is too thin or too wide: its "
            f"long side is {long / short:.1f} times its short side, over the limit of "
            f"{MAX_ASPECT_RATIO} (resizing the short side to a model's input would make it "
            "enormous); crop or pad the image."
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, keeping the full range of wide (16-bit, float) data."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_MODES:
        return _wide_to_l(image).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_l(image: Image.Image) -> Image.Image:
    """Scale a single-channel 16/32-bit or float image to 8 bits without clipping its range.

    Integer images are taken as 16-bit (0..65535 maps to 0..255, i.e. divided by 257); float images
    are taken as 0..1 when their maximum is at most 1, else as 0..255.
    """
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        values = values * scale
    else:
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=16)
def _eval_transform(pre: PreprocessSpec):  # noqa: ANN202 - torchvision type
    from headstart.data.transforms import build_eval_transform

    return build_eval_transform(pre)


def image_to_tensor(
    source: ImageSource,
    preprocessing: PreprocessSpec,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Turn an image file or bytes into the model input: THE one decode + eval-transform function.

    Args:
        source: A file path, or the encoded bytes of an image.
        preprocessing: The model's preprocessing spec.
        max_pixels: See ``decode_image``.

    Returns:
        A float32 tensor of shape (3, input_size, input_size), normalised with the spec's mean/std.

    Raises:
        DataError: See ``decode_image``; the size after the eval resize is checked too.
    """
    image = decode_image(source, max_pixels=max_pixels, resize_to=preprocessing.resize_size)
    return _eval_transform(preprocessing)(image)
