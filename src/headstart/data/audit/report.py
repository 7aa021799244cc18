"""What the data audit reports: bad files with a reason and a kind, leaks, and the report itself.

``AuditReport.to_dict`` is what ``data_report.json`` holds; ``save`` writes it atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from headstart.data.folders import DataSplits
from headstart.data.written import json_format
from headstart.errors import DataError
from headstart.files import atomic_write

__all__ = [
    "BAD_KINDS",
    "REPORT_FORMAT",
    "SAMPLE_KINDS",
    "SPLIT_NAMES",
    "AuditReport",
    "BadFile",
    "Leak",
    "is_data_report",
]

REPORT_FORMAT = "headstart-data-report"
"""The ``"format"`` of ``AuditReport.to_dict`` (``data_report.json``, ``check --out``)."""

BAD_KINDS = {
    "empty_file": "zero-byte files",
    "not_image": "not images (text, HTML, random bytes) with an image extension",
    "unsupported": "image formats headstart does not decode",
    "truncated": "truncated images",
    "corrupt": "corrupt images",
    "too_large": "too many pixels (possible decompression bombs)",
    "too_small": "images too small to use",
    "too_thin": "images too thin or too wide (extreme aspect ratio)",
    "unreadable": "unreadable files or folders (permissions)",
    "missing": "files gone since the folder was listed",
    "broken_symlink": "broken symlinks",
    "symlink_loop": "symlink loops (not followed)",
    "outside_class": "images outside class folders (ignored)",
    "empty_class": "empty class folders",
}
"""Every kind of problem a ``BadFile`` can have, with a heading for reports."""

SAMPLE_KINDS = frozenset(BAD_KINDS) - {"outside_class", "empty_class"}
"""Kinds that make a file unusable as a sample (they count in ``bad_fraction``)."""

SPLIT_NAMES = ("train", "val", "test")
"""The splits of ``DataSplits``, in report order."""


@dataclass(frozen=True)
class BadFile:
    """A file (or folder) that is skipped, with the reason and one of ``BAD_KINDS``."""

    path: str
    reason: str
    kind: str


@dataclass(frozen=True)
class Leak:
    """The same image (by content) in the training split and in ``split`` (val or test)."""

    train: str
    other: str
    split: str


@dataclass
class AuditReport:
    """What the audit found; ``to_dict`` is what ``data_report.json`` holds.

    Attributes:
        root: The audited data folder.
        splits: The splits as loaded, bad files included (``clean_splits`` drops them).
        bad: Skipped files and folders, each with a reason and a kind.
        duplicates: Groups of files with identical content (two or more paths each).
        leaks: Images that are in train and also in val or test.
        ignored: Files skipped, as ``load_splits`` does: files without an image extension and
            hidden files with one (such as macOS ``._photo.jpg``).
        written: Folders in the data that headstart wrote (run, report, cache folders), skipped.
        warnings: Readable warnings (imbalance, leaks, duplicates across classes, ...).
        fatal: Why the data cannot be trained on at all, or None.
        settings: The audit's settings (max_pixels, min_size, imbalance_ratio).
        seconds: Time the audit took.
        decoded: The decoded-image store entry of every file, when the audit was asked to fill
            one (``audit_splits(squares=...)``) and it fits the cache budget; not in ``to_dict``.
    """

    root: str
    splits: DataSplits
    bad: list[BadFile] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fatal: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    decoded: str | None = None

    @property
    def num_samples(self) -> int:
        """Image files in the splits (good and bad)."""
        return sum(len(getattr(self.splits, name)) for name in SPLIT_NAMES)

    @property
    def num_bad_samples(self) -> int:
        """Image files in the splits that cannot be used."""
        bad = {b.path for b in self.bad}
        return sum(s.path in bad for name in SPLIT_NAMES for s in getattr(self.splits, name))

    @property
    def bad_fraction(self) -> float:
        """Fraction of the split samples that cannot be used (0 when there are none)."""
        return self.num_bad_samples / self.num_samples if self.num_samples else 0.0

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Usable images per split and class (``{"train": {"cat": 10, ...}, ...}``)."""
        clean = self.clean_splits()
        return {
            split: dict(zip(clean.classes, per_class, strict=True))
            for split, per_class in clean.counts().items()
        }

    def clean_splits(self) -> DataSplits:
        """The splits without the bad files."""
        bad = {b.path for b in self.bad}
        parts: dict[str, Any] = {
            name: tuple(s for s in getattr(self.splits, name) if s.path not in bad)
            for name in SPLIT_NAMES
        }
        return replace(self.splits, **parts)

    def problems(self, max_bad_fraction: float = 1.0) -> list[str]:
        """Reasons the data cannot be trained on (empty if it can)."""
        if self.fatal:
            return [self.fatal]
        found = []
        if self.bad_fraction > max_bad_fraction:
            found.append(
                f"{self.num_bad_samples} of {self.num_samples} images "
                f"({self.bad_fraction:.1%}) cannot be used, over the limit of "
                f"{max_bad_fraction:.1%}; fix or remove them (see 'headstart check {self.root}') "
                "or raise --max-bad-fraction."
            )
        empty = [c for c, n in self.counts["train"].items() if n == 0]
        if empty:
            found.append(
                f"class(es) {', '.join(empty)} have no usable training images after skipping bad "
                f"files; fix them (see 'headstart check {self.root}') or remove the folder(s)."
            )
        return found

    def raise_if_unusable(self, max_bad_fraction: float = 1.0) -> None:
        """Raise the first of ``problems`` as a DataError.

        Raises:
            DataError: The data cannot be trained on; the message says how to fix it.
        """
        found = self.problems(max_bad_fraction)
        if found:
            raise DataError(found[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, bad files, duplicates, leaks, warnings."""
        return {
            "format": REPORT_FORMAT,
            "version": 1,
            "root": self.root,
            "classes": list(self.splits.classes),
            "counts": self.counts,
            "num_samples": self.num_samples,
            "num_bad_samples": self.num_bad_samples,
            "bad_fraction": self.bad_fraction,
            "bad": [{"path": b.path, "kind": b.kind, "reason": b.reason} for b in self.bad],
            "duplicates": self.duplicates,
            "leaks": [{"train": x.train, "other": x.other, "split": x.split} for x in self.leaks],
            "ignored": self.ignored,
            "written": self.written,
            "warnings": self.warnings,
            "fatal": self.fatal,
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``to_dict`` as JSON to ``path`` (the caller's file, never a user's), atomically."""
        return atomic_write(path, json.dumps(self.to_dict(), indent=1))


def is_data_report(path: str | Path) -> bool:
    """Whether the file ``path`` is a report ``AuditReport.save`` wrote (only its start is read)."""
    return Path(path).is_file() and json_format(path) == REPORT_FORMAT
