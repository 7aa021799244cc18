"""``headstart embed`` end to end on generated images with a tiny timm model (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_image_folder
from tests.e2e_helpers import TINY_MODEL, tiny_weights
from tests.e2e_helpers import run_cli as run


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("embed")
    data = make_image_folder(root / "data", ("cat", "dog", "fox"), n=3, layout="split", n_val=1)
    return data, tiny_weights(root)


def _args(data: Path, weights: Path, out: Path, *more: str) -> list[str]:
    return ["embed", str(data), "--model", TINY_MODEL, "--weights", str(weights), "--out",
            str(out), "--image-size", "32", "--batch-size", "5", *more]  # fmt: skip


def test_embed_writes_one_vector_per_image_then_reads_the_cache(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    data, weights = tree
    out = tmp_path / "embed.npz"
    code, stdout, err = run(_args(data, weights, out, "--device", "cpu"))
    assert code == 0, stdout + err
    assert "12 images" in stdout and "3 classes" in stdout and "on cpu" in stdout
    assert "feature cache" not in stdout
    with np.load(out, allow_pickle=False) as saved:
        vectors, paths, labels = saved["embeddings"], saved["paths"], saved["labels"]
        assert saved["classes"].tolist() == ["cat", "dog", "fox"]
    assert vectors.shape[0] == len(paths) == len(labels) == 12 and vectors.dtype == np.float32
    for path, label in zip(paths.tolist(), labels.tolist(), strict=True):
        assert Path(path).parent.name == label and Path(path).is_relative_to(data.absolute())
    code, stdout, err = run(_args(data, weights, out))  # the default device: the best here
    assert code == 0, err
    assert "(from the feature cache)" in stdout
    with np.load(out, allow_pickle=False) as again:
        assert np.array_equal(again["embeddings"], vectors)


@pytest.mark.parametrize(
    ("more", "out", "needle"),
    [
        ((), "{data}/train/embed.npz", "inside the data folder"),
        ((), "{tmp}/mine.txt", "use one of .npz, .parquet"),
        ((), "{tmp}/mine.npz", "not an embeddings file"),
        (("--device", "gpu"), "{tmp}/e.npz", "use one of: auto, cpu"),
        (("--model", "tv:vit_b16"), "{tmp}/e.npz", "Did you mean: tv:vit_b_16"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tree: tuple[Path, Path], tmp_path: Path, more: tuple[str, ...], out: str, needle: str
) -> None:
    data, weights = tree
    (tmp_path / "mine.npz").write_bytes(b"user file")
    code, stdout, err = run(_args(data, weights, Path(out.format(data=data, tmp=tmp_path)), *more))
    assert code == 2, stdout + err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert (tmp_path / "mine.npz").read_bytes() == b"user file"
    assert not list(data.rglob("*.npz"))
