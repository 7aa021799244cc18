"""Reliability of the data audit on a generated corpus of bad and good-but-odd files.

Builds a corpus in a temporary folder, snapshots every file (SHA-256, size, mode, mtime), runs
``audit_folder``, ``load_splits`` and the one decode function (``image_to_tensor`` at 224 px) on
every file, and prints: kinds of problems, problems reported / total, good images rejected, silent
mislabels (images that landed in a class they are not in, classes that are no class folder),
crashes (anything but a ``DataError``) and files modified. Hostile inputs include thin and wide
images (20000x1, 1x20000, an 8000000x8 PNG of 62 KB), folders headstart wrote inside the data (a
marked run folder, a marked cache folder, an old run folder holding only ``splits.json``) and
hidden images. Then times the audit on ~1,000 small images with 1 and with several threads.

    uv run python benchmarks/reliability_corpus.py [--speed-images 1000] [--speed-size 96]
        [--workers 4]

The tests in tests/data/audit/ use ``build_corpus``, ``snapshot`` and ``score`` from here.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        written: Path -> case name, for every folder headstart wrote that must be skipped (listed
            in ``AuditReport.written``), never read as images nor taken for a class.
        hidden: Path -> case name, for every hidden image file (listed in ``ignored``).
        classes: The class folders the audit must find.
        skipped: Kinds not built here, with the reason.
    """

    root: Path
    bad: dict[str, str] = field(default_factory=dict)
    good: list[str] = field(default_factory=list)
    duplicate: tuple[str, str] = ("", "")
    leak: tuple[str, str] = ("", "")
    written: dict[str, str] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)
    classes: set[str] = field(default_factory=lambda: {"cat", "dog"})
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """Names of the problem cases built (file names of the bad files, the written folders'
        and hidden files' case names, plus pairs)."""
        names = [Path(p).name for p in self.bad] + ["duplicate", "train_val_leak"]
        return sorted(names + list(self.written.values()) + list(self.hidden.values()))


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


@functools.cache
def png_gray(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of ``width`` x ``height`` black pixels, compressed row by row (an
    8000000x8 one takes 62 KB and 0.2 s to build)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # the filter byte, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
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
        "panorama_10to1.png": _encoded(base.resize((400, 40)), "PNG"),
        "banner_16to1.png": _encoded(base.resize((256, 16)), "PNG"),
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
        "thin_20000x1.png": _encoded(Image.new("RGB", (20_000, 1)), "PNG"),
        "tall_1x20000.png": _encoded(Image.new("RGB", (1, 20_000)), "PNG"),
        "strip_8000000x8.png": png_gray(8_000_000, 8),
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
    "thin_20000x1.png": "too_thin",
    "tall_1x20000.png": "too_thin",
    "strip_8000000x8.png": "too_thin",
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


def _write_outputs(root: Path, corpus: Corpus) -> None:
    """Folders headstart wrote, inside the data, each holding PNGs a walk must never take in."""
    from headstart.files import mark_folder

    train = root / "train"
    old_run = train / "cat" / "old_run"  # `train data --out data/train/cat/old_run`, old version
    old_run.mkdir(parents=True)
    doc = {"format": "headstart-splits", "version": 1, "classes": ["cat", "dog"], "train": []}
    (old_run / "splits.json").write_text(json.dumps(doc, indent=1))
    folders = {
        mark_folder(root / "runs" / "run", "run"): ("run_folder_in_data", root / "runs"),
        mark_folder(train / "runs" / "run", "run"): ("run_folder_as_class", train / "runs"),
        old_run: ("old_run_folder_no_marker", old_run),
        mark_folder(train / "dog" / "cache", "cache"): ("cache_folder_in_class", None),
    }
    for i, (folder, (name, reported)) in enumerate(folders.items()):
        (folder / "report").mkdir(parents=True, exist_ok=True)
        _noise(GOOD_SIZE, 500 + i, (90, 90, 90)).save(folder / "report" / "confusion.png")
        corpus.written[str(reported or folder)] = name


def _write_hidden(root: Path, corpus: Corpus) -> None:
    """Hidden image files: a real PNG and a macOS resource fork, both ignored, never samples."""
    hidden = root / "train" / "cat" / ".hidden.png"
    _noise(GOOD_SIZE, 600, (9, 9, 9)).save(hidden)
    corpus.hidden[str(hidden)] = "hidden_image"
    fork = root / "train" / "dog" / "._good_0.png"
    fork.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    corpus.hidden[str(fork)] = "macos_resource_fork"


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
        corpus.classes.add("empty_class")
    _write_outputs(root, corpus)
    _write_hidden(root, corpus)
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
    noted = {
        **{p: ("written", report.written) for p in corpus.written},  # type: ignore[attr-defined]
        **{p: ("ignored", report.ignored) for p in corpus.hidden},  # type: ignore[attr-defined]
    }
    missed.update({p: (where, None) for p, (where, listed) in noted.items() if p not in listed})
    noted_found = sum(p in listed for p, (_, listed) in noted.items())
    pairs = [
        any(set(corpus.duplicate) <= set(g) for g in report.duplicates),  # type: ignore[attr-defined]
        any(
            (x.train, x.other) == corpus.leak
            for x in report.leaks  # type: ignore[attr-defined]
        ),
    ]
    return {
        "kinds": len(corpus.kinds),
        "bad_total": len(corpus.bad) + len(noted) + 2,
        "bad_reported": len(reported) + noted_found + sum(pairs),
        "missed": missed,
        "without_reason": [b.path for b in report.bad if not b.reason],  # type: ignore[attr-defined]
        "good_total": len(corpus.good),
        "good_rejected": sorted(p for p in corpus.good if p in found),
        "mislabels": mislabels(corpus, report.splits),  # type: ignore[attr-defined]
    }


def mislabels(corpus: Corpus, splits: object) -> list[str]:
    """Samples of ``splits`` that are no image file of the corpus's class folders, or carry
    another class's label, and classes that are no class folder of the corpus."""
    classes = splits.classes  # type: ignore[attr-defined]
    wrong = [f"class {name}" for name in classes if name not in corpus.classes]
    files = set(corpus.good) | set(corpus.bad)
    for part in ("train", "val", "test"):
        for sample in getattr(splits, part):
            folder = Path(sample.path).relative_to(corpus.root).parts[1]
            if sample.path not in files or classes[sample.label] != folder:
                wrong.append(sample.path)
    return wrong


def decode_all(corpus: Corpus, input_size: int = 224) -> dict[str, str]:
    """Run every file of the corpus through ``image_to_tensor``; return the crashes (path ->
    exception): anything but the ``DataError`` that says why a file cannot be used."""
    from headstart.data.images import image_to_tensor
    from headstart.errors import DataError
    from headstart.preprocessing import PreprocessSpec

    spec = PreprocessSpec(input_size=input_size)
    crashes: dict[str, str] = {}
    for path in sorted(set(corpus.good) | set(corpus.bad)):
        if os.path.isdir(path):
            continue
        try:
            image_to_tensor(path, spec)
        except DataError:
            pass
        except Exception as exc:  # noqa: BLE001 - counting them is the point
            crashes[path] = f"{type(exc).__name__}: {exc}"
    return crashes


@dataclass
class Outcome:
    """One corpus built, audited, split and decoded: what was found and what changed."""

    corpus: Corpus
    report: Any
    score: dict[str, Any]
    seconds: float
    entries: int
    changed: list[str]
    crashes: dict[str, str]


def run_corpus(root: Path, *, empty_class: bool) -> Outcome:
    """Build a corpus in ``root``, audit it and, when it is usable, split and decode it too."""
    from headstart.data.audit import audit_folder
    from headstart.data.folders import load_splits

    corpus = build_corpus(root, empty_class=empty_class)
    before = snapshot(corpus.root)
    start = time.perf_counter()
    report = audit_folder(corpus.root)
    seconds = time.perf_counter() - start
    result = score(corpus, report)
    crashes: dict[str, str] = {}
    if not empty_class:  # what train reads: the same classes and files, no more
        result["mislabels"] += mislabels(corpus, load_splits(corpus.root))
        crashes = decode_all(corpus)
    after = snapshot(corpus.root)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return Outcome(corpus, report, result, seconds, len(before), changed, crashes)


def _reliability() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        full = run_corpus(Path(tmp) / "data", empty_class=True)
        usable = run_corpus(Path(tmp) / "usable", empty_class=False)
    result, corpus = full.score, full.corpus
    print(f"corpus: {full.entries} entries, {result['kinds']} kinds of problem")
    print(f"kinds: {', '.join(corpus.kinds)}")
    for kind, why in corpus.skipped.items():
        print(f"skipped kind: {kind} ({why})")
    print(
        f"problems reported with path and reason: {result['bad_reported']} / {result['bad_total']}"
    )
    print(f"missed: {result['missed'] or 'none'}; without a reason: {result['without_reason']}")
    print(f"good images rejected: {len(result['good_rejected'])} / {result['good_total']}")
    wrong = result["mislabels"] + usable.score["mislabels"]
    print(f"silent mislabels (audit; load_splits of the usable copy): {len(wrong)} {wrong or ''}")
    changed = full.changed + usable.changed
    print(f"files modified: {len(changed)} / {full.entries + usable.entries}")
    print(f"usable: {full.report.fatal is None} ({full.report.fatal})")
    print(f"usable without the empty class: {usable.report.fatal is None}")
    print(f"audit time: {full.seconds:.2f}s")
    print(
        "crashes (audit, load_splits, image_to_tensor at 224 px on every file): "
        f"{len(usable.crashes)} {usable.crashes or ''}"
    )


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
            report = audit_folder(root, workers=threads, use_cache=False)  # every file read
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
    logging.getLogger("headstart").setLevel(logging.ERROR)  # the report says what was skipped
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HEADSTART_CACHE"] = cache  # the audit cache of these runs, not the user's
        _reliability()
        if args.speed_images:
            _speed(args.speed_images, args.workers, args.speed_size)


if __name__ == "__main__":
    main()
