"""Inspecting one file for the audit: read it, fully decode it, and say why it cannot be used.

A decode failure is classified by sniffing the content's first bytes: zero-byte files, non-images
with image extensions (text, HTML, random bytes), unsupported formats (HEIC, SVG, PDF, ...),
truncated or corrupt images, decompression bombs (rejected from the header), images too thin or
too wide (an extreme aspect ratio, rejected from the header) and images too small to use. Files
are decoded with ``decode_image`` (the one decoder), and only read. ``read_file`` reads a file once
for the audit and the decoded-image store together (``read_pass`` runs it in worker processes).
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.data.audit.report import BadFile
from headstart.data.image_store import SquareSpec, square_of
from headstart.data.images import DEFAULT_MAX_PIXELS, check_size, decode_image
from headstart.errors import DataError

__all__ = [
    "DEFAULT_MIN_SIZE",
    "FileInspection",
    "bad_from_os_error",
    "Square",
    "inspect_file",
    "read_file",
]

DEFAULT_MIN_SIZE = 8
"""Images with a side shorter than this many pixels are rejected as too small."""

_DECODABLE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_UNSUPPORTED_MAGIC = (
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}


@dataclass(frozen=True)
class FileInspection:
    """The result of ``inspect_file``: the content hash (None if unreadable) and any problem."""

    path: str
    digest: str | None
    bad: BadFile | None


def inspect_file(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int = DEFAULT_MIN_SIZE
) -> FileInspection:
    """Read and fully decode one file (read-only) and say whether it is a usable image."""
    inspection, _ = read_file(str(path), max_pixels=max_pixels, min_size=min_size)
    assert inspection is not None
    return inspection


Square = tuple[np.ndarray, tuple[int, ...]]
"""A decoded file's uint8 (3, S, S) square and its geometry (``image_store.square_of``)."""


def read_file(
    path: str,
    *,
    max_pixels: int,
    min_size: int,
    audit: bool = True,
    square: SquareSpec | None = None,
) -> tuple[FileInspection | None, Square | str | None]:
    """Read ``path`` once: inspect it for the audit and/or make its square for the image store.

    Returns:
        The inspection (None unless ``audit``), and the square, or why the file has none (None
        without ``square``).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        bad = bad_from_os_error(path, exc)
        return (FileInspection(path, None, bad) if audit else None), f"{path}: {bad.reason}"
    digest = hashlib.sha256(data).hexdigest() if audit else None
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except DataError as exc:
        message = str(exc).removeprefix("cannot read image <bytes>: ")
        inspection = None
        if audit:
            kind, reason = ("empty_file", "zero-byte file; remove it.") if not data else (
                _classify(data, message)
            )
            inspection = FileInspection(path, digest, BadFile(path, reason, kind))
        return inspection, f"cannot read image {path}: {message}"
    inspection = (
        FileInspection(path, digest, _too_small(path, image.size, min_size)) if audit else None
    )
    if square is None:
        return inspection, None
    try:
        check_size(image.size, path, max_pixels=max_pixels, resize_to=square.size)
    except DataError as exc:
        return inspection, str(exc)
    return inspection, square_of(image, square)


def _too_small(path: str, size: tuple[int, int], min_size: int) -> BadFile | None:
    width, height = size
    if min(width, height) >= min_size:
        return None
    reason = (
        f"{width}x{height} pixels is smaller than {min_size} px on a side; remove it or "
        "lower --min-size."
    )
    return BadFile(path, reason, "too_small")


def bad_from_os_error(name: str, exc: OSError) -> BadFile:
    """The ``BadFile`` for a file that cannot be read or stat'ed: unreadable, a link, gone."""
    if isinstance(exc, PermissionError):
        return BadFile(name, "permission denied; make the file readable (chmod +r).", "unreadable")
    if exc.errno == errno.ELOOP:
        return BadFile(name, "symlink loop; fix or remove the link.", "symlink_loop")
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(name):
            target = os.readlink(name)
            return BadFile(name, f"broken symlink to {target}; fix the link.", "broken_symlink")
        return BadFile(name, "no such file (removed while auditing?).", "missing")
    return BadFile(name, f"cannot read: {exc.strerror or exc}.", "unreadable")


def _classify(data: bytes, message: str) -> tuple[str, str]:
    """Map a decode failure to a kind and a readable reason, sniffing the content's first bytes."""
    lowered = message.lower()
    if "too thin or too wide" in lowered or "resizing its short side" in lowered:
        return "too_thin", message
    if "decompression bomb" in lowered or "over the limit" in lowered:
        hint = "" if "max_pixels" in message else " Shrink the image or raise --max-pixels."
        return "too_large", message + hint
    if "has no pixels" in lowered:
        return "corrupt", message
    if "not a supported image format" not in lowered:
        truncated = any(w in lowered for w in ("truncated", "broken data stream", "end of file"))
        return ("truncated" if truncated else "corrupt"), message
    head = data[:512]
    for magic, fmt in _DECODABLE_MAGIC:
        if head.startswith(magic):
            return "corrupt", f"starts like a {fmt} but its header is corrupt; re-export it."
    unsupported = _unsupported_format(head)
    if unsupported:
        return "unsupported", (
            f"{unsupported} image, a format headstart does not decode; convert it to PNG or JPEG."
        )
    return "not_image", f"not an image: {_describe_content(head)}; remove it or rename it."


def _unsupported_format(head: bytes) -> str | None:
    for magic, fmt in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return fmt
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], f"ISO media ({head[8:12].decode('latin-1')})")
    if head.startswith(b"RIFF") and head[8:12] != b"WEBP":
        return "RIFF (not WebP)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def _describe_content(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")) or b"<html" in text:
        return "an HTML page (a web page saved under an image name)"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        decoded = ""
    if decoded and all(c.isprintable() or c.isspace() for c in decoded):
        return "a text file"
    return f"unknown content (starts with {head[:8].hex()})"
