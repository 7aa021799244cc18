"""The image dataset: a file broken after the data was audited is substituted, once logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample
from headstart.errors import DataError
from tests.conftest import make_image_folder


def test_dataset_substitutes_a_file_broken_after_the_audit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat",), n=4)
    samples = [Sample(str(p), 0) for p in sorted((data / "cat").iterdir())]
    dataset = ImageDataset(samples, transform=lambda image: image.tobytes())
    first, second = samples[0].path, samples[1].path
    Path(first).unlink()  # deleted mid-run
    Path(second).write_bytes(Path(second).read_bytes()[:50])  # truncated mid-run
    expected = dataset[2]
    assert dataset[0] == expected and dataset[1] == expected  # the next index that decodes
    assert dataset[0] == expected  # the same substitute every time
    assert set(dataset.failures) == {first, second}
    assert "no such file" in dataset.failures[first]
    assert sum(first in r.getMessage() for r in caplog.records) == 1  # logged once
    for sample in dataset.samples:
        Path(sample.path).unlink(missing_ok=True)
    with pytest.raises(DataError, match="can be read"):
        dataset[0]
