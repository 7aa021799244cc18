"""Reliability of the data audit on a generated corpus of bad and good-but-odd files.

Builds a corpus in a temporary folder, snapshots every file (SHA-256, size, mode, mtime), runs
``audit_folder``, and prints: kinds of bad files, bad files reported / total, good images rejected,
files modified. Then times the audit on ~1,000 small images with 1 and with several threads.

    uv run python benchmarks/reliability_corpus.py [--speed-images 1000] [--speed-size 96]
        [--workers 4]

The tests in tests/data/audit/ use ``build_corpus``, ``snapshot`` and ``score`` from here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_SIZE = (40, 32)


@dataclass
class Corpus:
    """A generated data folder and what the audit should find in it.

    Attributes:
        root: The data folder (``train/`` + ``val/`` layout).
        bad: Path -> expected kind, for every file or folder the audit must report.
        good: Paths of valid (some unusual) images that must be accepted.
        duplicate: Two paths with identical content in the same split.
        leak: (train path, val path) with identical content.
        skipped: Kinds not built here, with the reason.
    """

    root: Path
    bad: dict[str, str] = field(default_factory=dict)
    good: list[str] = field(default_factory=list)
    duplicate: tuple[str, str] = ("", "")
    leak: tuple[str, str] = ("", "")
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """Names of the problem cases built (file name stems of the bad files, plus pairs)."""
        names = [Path(p).name for p in self.bad] + ["duplicate", "train_val_leak"]
        return sorted(names)


def _noise(size: tuple[int, int], seed: int, colour: tuple[int, int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.asarray(colour)[None, None, :] + rng.integers(-30, 31, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _deep(seed: int) -> np.ndarray:
    """A 16-bit grey image with values over 255 (Pillow mode I;16)."""
    return np.random.default_rng(seed).integers(0, 65536, size=(32, 40)).astype(np.uint16)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _write_good(folder: Path, corpus: Corpus, seed: int, colour: tuple[int, int, int]) -> None:
    """Plain images plus good-but-odd ones that must be accepted."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        path = folder / f"good_{i}.png"
        _noise(GOOD_SIZE, seed + i, colour).save(path)
        corpus.good.append(str(path))
    base = _noise(GOOD_SIZE, seed + 50, colour)
    odd: dict[str, bytes] = {
        "png_named.jpg": _encoded(base, "PNG"),
        "cmyk.jpg": _encoded(base.convert("CMYK"), "JPEG"),
        "deep16.png": _encoded(Image.fromarray(_deep(seed)), "PNG"),
        "palette.png": _encoded(base.convert("P"), "PNG", transparency=0),
        "rgba.png": _encoded(base.convert("RGBA"), "PNG"),
        "gray.jpg": _encoded(base.convert("L"), "JPEG"),
        "anim.gif": _encoded(base.convert("P"), "GIF"),
        "plain.bmp": _encoded(base, "BMP"),
        "plain.webp": _encoded(base, "WEBP"),
        "plain.tiff": _encoded(base, "TIFF"),
        "just_8px.png": _encoded(base.resize((8, 8)), "PNG"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    odd["exif_rotated.jpg"] = _encoded(base, "JPEG", exif=exif.tobytes())
    for name, data in odd.items():
        (folder / name).write_bytes(data)
        corpus.good.append(str(folder / name))


def _bad_bytes(seed: int) -> dict[str, bytes]:
    """File name -> content of every bad file written into one class folder."""
    jpeg = _encoded(_noise((64, 64), seed, (200, 100, 50)), "JPEG", quality=90)
    png = _encoded(_noise((64, 64), seed + 1, (50, 100, 200)), "PNG")
    rng = np.random.default_rng(seed)
    return {
        "zero_byte.jpg": b"",
        "text.jpg": b"this is not an image\n" * 5,
        "html.jpg": b"<!DOCTYPE html><html><head><title>Image</title></head><body></body></html>",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "corrupt_header.png": b"\x89PNG\r\n\x1a\n" + rng.bytes(200),
        "svg.png": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        "heic.png": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + rng.bytes(64),
        "pdf.jpg": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + rng.bytes(64),
        "random.png": rng.bytes(1024),
        "bomb.png": _png_header_only(100_000, 100_000),
        "tiny_1x1.png": _encoded(Image.new("RGB", (1, 1)), "PNG"),
        "zero_width.png": _png_header_only(0, 10),
        "jpeg_header_only.jpg": jpeg[:20],
    }


_EXPECTED_KIND = {
    "zero_byte.jpg": "empty_file",
    "text.jpg": "not_image",
    "html.jpg": "not_image",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "corrupt_header.png": "corrupt",
    "svg.png": "unsupported",
    "heic.png": "unsupported",
    "pdf.jpg": "unsupported",
    "random.png": "not_image",
    "bomb.png": "too_large",
    "tiny_1x1.png": "too_small",
    "zero_width.png": "corrupt",
    "jpeg_header_only.jpg": None,  # truncated or corrupt, depending on where Pillow stops
}


def _write_bad(folder: Path, corpus: Corpus, seed: int) -> None:
    for name, data in _bad_bytes(seed).items():
        (folder / name).write_bytes(data)
        corpus.bad[str(folder / name)] = _EXPECTED_KIND[name] or "truncated|corrupt"
    (folder / "broken_link.jpg").symlink_to(folder / "does_not_exist.jpg")
    corpus.bad[str(folder / "broken_link.jpg")] = "broken_symlink"
    (folder / "self_loop.jpg").symlink_to("self_loop.jpg")
    corpus.bad[str(folder / "self_loop.jpg")] = "symlink_loop"
    (folder / "loop_dir").symlink_to(".", target_is_directory=True)
    corpus.bad[str(folder / "loop_dir")] = "symlink_loop"
    unreadable = folder / "unreadable.jpg"
    if os.geteuid() == 0:
        corpus.skipped["unreadable"] = "running as root: chmod 000 does not block reading"
    else:
        _noise(GOOD_SIZE, seed, (0, 0, 0)).save(unreadable, format="JPEG")
        unreadable.chmod(0)
        corpus.bad[str(unreadable)] = "unreadable"
    (folder / "notes.txt").write_text("not an image extension: ignored, not bad\n")


def build_corpus(root: Path, *, empty_class: bool = True) -> Corpus:
    """Write the corpus into ``root`` (created) and return what the audit should report.

    Args:
        root: Folder to create.
        empty_class: Also add an empty class folder, which makes the folder unusable for training
            (the audit still reports every file).
    """
    corpus = Corpus(root=root)
    train, val = root / "train", root / "val"
    _write_good(train / "cat", corpus, seed=0, colour=(220, 40, 40))
    _write_good(train / "dog", corpus, seed=100, colour=(40, 200, 60))
    _write_good(val / "cat", corpus, seed=200, colour=(220, 40, 40))
    _write_good(val / "dog", corpus, seed=300, colour=(40, 200, 60))
    _write_bad(train / "cat", corpus, seed=7)
    dup = train / "dog" / "copy_of_good_0.png"
    shutil.copyfile(train / "dog" / "good_0.png", dup)
    corpus.good.append(str(dup))
    corpus.duplicate = (str(train / "dog" / "good_0.png"), str(dup))
    leak = val / "cat" / "same_as_train.png"
    shutil.copyfile(train / "cat" / "good_1.png", leak)
    corpus.good.append(str(leak))
    corpus.leak = (str(train / "cat" / "good_1.png"), str(leak))
    for loose in (root / "loose.png", train / "loose_in_train.png"):
        _noise(GOOD_SIZE, 9, (9, 9, 9)).save(loose)
        corpus.bad[str(loose)] = "outside_class"
    if empty_class:
        (train / "empty_class").mkdir()
        corpus.bad[str(train / "empty_class")] = "empty_class"
    return corpus


def snapshot(root: Path) -> dict[str, tuple]:
    """(mode, size, mtime_ns, sha256) of every entry under ``root``, links not followed."""
    state: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            digest = ""
            if stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            state[path] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return state


def score(corpus: Corpus, report: object) -> dict[str, object]:
    """Compare an ``AuditReport`` with what the corpus holds."""
    found = {b.path: b for b in report.bad}  # type: ignore[attr-defined]
    reported = [
        p for p, kind in corpus.bad.items() if p in found and found[p].kind in kind.split("|")
    ]
    missed = {p: (kind, found[p].kind if p in found else None) for p, kind in corpus.bad.items()}
    missed = {p: v for p, v in missed.items() if p not in reported}
    pairs = [
        any(set(corpus.duplicate) <= set(g) for g in report.duplicates),  # type: ignore[attr-defined]
        any(
            (x.train, x.other) == corpus.leak
            for x in report.leaks  # type: ignore[attr-defined]
        ),
    ]
    return {
        "kinds": len(corpus.kinds),
        "bad_total": len(corpus.bad) + 2,
        "bad_reported": len(reported) + sum(pairs),
        "missed": missed,
        "without_reason": [b.path for b in report.bad if not b.reason],  # type: ignore[attr-defined]
        "good_total": len(corpus.good),
        "good_rejected": sorted(p for p in corpus.good if p in found),
    }


def _reliability() -> None:
    from headstart.data.audit import audit_folder

    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(Path(tmp) / "data")
        before = snapshot(corpus.root)
        start = time.perf_counter()
        report = audit_folder(corpus.root)
        seconds = time.perf_counter() - start
        after = snapshot(corpus.root)
        result = score(corpus, report)
        changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    print(f"corpus: {len(before)} entries, {result['kinds']} kinds of problem")
    print(f"kinds: {', '.join(corpus.kinds)}")
    for kind, why in corpus.skipped.items():
        print(f"skipped kind: {kind} ({why})")
    print(f"bad reported with path and reason: {result['bad_reported']} / {result['bad_total']}")
    print(f"missed: {result['missed'] or 'none'}; without a reason: {result['without_reason']}")
    print(f"good images rejected: {len(result['good_rejected'])} / {result['good_total']}")
    print(f"files modified: {len(changed)} / {len(before)}")
    print(f"usable: {report.fatal is None} ({report.fatal})")
    print(f"audit time: {seconds:.2f}s; crashes: 0")


def _speed(n_images: int, workers: int, side: int) -> None:
    from headstart.data.audit import audit_folder

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "speed"
        for i in range(n_images):
            folder = root / f"class_{i % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            ext = (".jpg", ".png")[i % 2]
            _noise((side, side), i, (120, 90, 60)).save(folder / f"{i:05d}{ext}")
        for threads in sorted({1, workers}):
            start = time.perf_counter()
            report = audit_folder(root, workers=threads)
            seconds = time.perf_counter() - start
            print(
                f"speed: {report.num_samples} images of {side}x{side} (half JPEG, half PNG), "
                f"{threads} thread(s): {seconds:.2f}s = {report.num_samples / seconds:.0f} img/s"
            )


def main() -> None:
    """Run the reliability check, then the speed measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-images", type=int, default=1000)
    parser.add_argument("--speed-size", type=int, default=96, help="Side of the speed images.")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = parser.parse_args()
    _reliability()
    if args.speed_images:
        _speed(args.speed_images, args.workers, args.speed_size)


if __name__ == "__main__":
    main()
