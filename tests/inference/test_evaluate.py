"""Evaluation scores only images it could read, and says which it left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.artifact import LoadedModel
from headstart.data.folders import load_eval_samples
from headstart.errors import DataError
from headstart.inference.evaluate import evaluate_samples
from tests.inference.helpers import tiny_loaded


def _loaded() -> LoadedModel:
    return tiny_loaded(("a", "b"))


def test_unreadable_images_are_left_out_not_replaced(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=4)
    broken = data / "b" / "b_001.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated after the scan
    loaded = _loaded()
    samples = load_eval_samples(data, loaded.classes)
    result = evaluate_samples(loaded, samples)
    assert result.metrics["num_images"] == 7
    assert [s["path"] for s in result.metrics["skipped"]] == [str(broken)]
    assert str(broken) not in result.paths and len(result.paths) == 7
    assert result.targets.tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_nothing_readable_is_an_error(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=1)
    for path in data.rglob("*.png"):
        path.write_bytes(b"nope")
    loaded = _loaded()
    with pytest.raises(DataError, match="none of the 2 images"):
        evaluate_samples(loaded, load_eval_samples(data, loaded.classes))
