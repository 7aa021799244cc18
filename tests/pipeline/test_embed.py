"""Embeddings: which images and classes, the vectors against the body run directly, the cache, the
file formats and the refusals of ``--out`` (offline, a tiny timm model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.errors import ConfigError
from headstart.pipeline import embed_file
from headstart.pipeline.embed import NO_CLASS, embed_folder, embed_samples
from headstart.pipeline.embed_file import check_embed_out, is_embed_file, write_embeddings
from tests.conftest import make_image_folder
from tests.e2e_helpers import TINY_MODEL, tiny_weights

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights"))


def _embed(data: Path, weights: Path, tmp_path: Path, **kwargs):
    return embed_folder(
        data, TINY_MODEL, weights_file=weights, image_size=32, batch_size=4, device="cpu",
        cache_root=tmp_path / "features", **kwargs,
    )  # fmt: skip


def test_samples_of_each_layout(tmp_path: Path) -> None:
    flat = make_image_folder(tmp_path / "flat", ("b", "a"), n=2)
    samples, classes = embed_samples(flat)
    assert classes == ("a", "b") and [s.label for s in samples] == [0, 0, 1, 1]
    split = make_image_folder(tmp_path / "split", ("x", "y"), n=2, layout="split", n_test=1)
    samples, classes = embed_samples(split)
    assert classes == ("x", "y") and len(samples) == 2 * (2 + 2 + 1)
    assert {Path(s.path).parts[-3] for s in samples} == {"train", "val", "test"}
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in (flat / "a").iterdir():
        (loose / path.name).write_bytes(path.read_bytes())
    samples, classes = embed_samples(loose)
    assert classes == () and len(samples) == 2 and {s.label for s in samples} == {NO_CLASS}


def test_vectors_are_the_body_output_and_come_back_from_the_cache(
    tmp_path: Path, weights: Path
) -> None:
    import timm
    from safetensors.torch import load_file

    from headstart.data.images import image_to_tensor

    data = make_image_folder(tmp_path / "data", ("cat", "dog"), n=3)
    first = _embed(data, weights, tmp_path)
    model = timm.create_model("test_resnet", pretrained=False)
    model.load_state_dict(load_file(str(weights)))
    assert first.vectors.shape == (6, model.num_features) and first.vectors.dtype == np.float32
    assert first.classes == ("cat", "dog") and first.labels.tolist() == [0, 0, 0, 1, 1, 1]
    first_cat = sorted((data / "cat").iterdir())[0]
    assert first.paths[0] == str(first_cat.absolute())
    assert first.label_names()[3] == "dog" and not first.from_cache and first.device == "cpu"
    x = image_to_tensor(first.paths[4], first.preprocessing)[None]
    assert first.preprocessing.input_size == 32
    with torch.no_grad():
        direct = model.eval().forward_head(model.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(first.vectors[4], direct[0].numpy(), rtol=1e-5, atol=1e-5)
    second = _embed(data, weights, tmp_path)
    assert second.from_cache and np.array_equal(second.vectors, first.vectors)


def test_an_unreadable_image_gets_no_row(tmp_path: Path, weights: Path) -> None:
    data = make_image_folder(tmp_path / "data", ("cat", "dog"), n=2)
    broken = data / "dog" / "broken.png"
    broken.write_bytes(b"not an image")
    result = _embed(data, weights, tmp_path)
    assert str(broken.absolute()) in result.skipped and str(broken.absolute()) not in result.paths
    assert result.vectors.shape[0] == 4 == len(result.paths) == len(result.labels)


def test_a_fixed_size_model_refuses_another_image_size(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", ("cat", "dog"), n=1)
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "vit.safetensors"
    state = timm.create_model("test_vit", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ConfigError, match="160 px only.*--image-size 160"):
        embed_folder(data, "timm:test_vit", weights_file=path, image_size=64, device="cpu")


def test_npz_round_trip_and_replacing_only_our_files(tmp_path: Path, weights: Path) -> None:
    data = make_image_folder(tmp_path / "data", ("cat", "dog"), n=2)
    result = _embed(data, weights, tmp_path)
    out = tmp_path / "out" / "embed.npz"
    write_embeddings(result, out, data=data)
    with np.load(out, allow_pickle=False) as saved:
        assert saved["embeddings"].dtype == np.float32
        assert np.array_equal(saved["embeddings"], result.vectors)
        assert saved["paths"].tolist() == list(result.paths)
        assert saved["labels"].tolist() == ["cat", "cat", "dog", "dog"]
        assert saved["label_ids"].tolist() == [0, 0, 1, 1]
        assert saved["classes"].tolist() == ["cat", "dog"] and str(saved["model"]) == TINY_MODEL
    assert is_embed_file(out)
    write_embeddings(result, out, data=data)  # ours: replaced
    mine = tmp_path / "mine.npz"
    np.savez(mine, embeddings=np.zeros((1, 2)))
    with pytest.raises(ConfigError, match="not an embeddings file headstart wrote"):
        write_embeddings(result, mine, data=data)
    assert not is_embed_file(mine) and np.load(mine)["embeddings"].shape == (1, 2)


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("{data}/cat/embed.npz", "inside the data folder"),
        ("{tmp}/embed.csv", "use one of .npz, .parquet"),
        ("{tmp}", "is a folder"),
        ("{tmp}/notes.npz", "not an embeddings file"),
    ],
)
def test_out_refusals(tmp_path: Path, where: str, needle: str) -> None:
    data = make_image_folder(tmp_path / "data", ("cat", "dog"), n=1)
    (tmp_path / "notes.npz").write_text("my notes")
    with pytest.raises(ConfigError, match=needle):
        check_embed_out(Path(where.format(data=data, tmp=tmp_path)), data)
    assert (tmp_path / "notes.npz").read_text() == "my notes"


def test_parquet_without_pyarrow_names_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        embed_file.importlib.util, "find_spec", lambda n, *a: None if n == "pyarrow" else real(n)
    )
    with pytest.raises(ConfigError, match="pip install pyarrow"):
        check_embed_out(tmp_path / "embed.parquet", tmp_path / "data")


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed (pip install pyarrow)")
def test_parquet_round_trip(tmp_path: Path, weights: Path) -> None:
    import pyarrow.parquet as pq

    data = make_image_folder(tmp_path / "data", ("cat", "dog"), n=2)
    result = _embed(data, weights, tmp_path)
    out = write_embeddings(result, tmp_path / "embed.parquet", data=data)
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == list(result.paths)
    assert table.column("label").to_pylist() == ["cat", "cat", "dog", "dog"]
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.array_equal(vectors, result.vectors) and is_embed_file(out)
