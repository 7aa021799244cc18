"""Prediction: the shared decode / run / top-k pieces, and files predicted in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError
from headstart.inference.predict import (
    ModelRunner,
    Prediction,
    decode_images,
    logits_for_files,
    predict_files,
    predict_proba_files,
    top_k,
)
from tests.inference.helpers import tiny_loaded

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return tiny_loaded(CLASSES)


@pytest.fixture
def files(tmp_path: Path, image_folder_factory) -> list[Path]:
    data = image_folder_factory(tmp_path / "data", CLASSES, n=3)
    return sorted(data.rglob("*.png"))


def test_runner_matches_a_plain_forward(loaded: LoadedModel, files: list[Path]) -> None:
    images = torch.stack([image_to_tensor(f, loaded.preprocessing) for f in files])
    with torch.no_grad():
        expected = loaded.model(images)
    runner = ModelRunner(loaded)
    assert runner.device == torch.device("cpu") and runner.layout == torch.channels_last
    got = runner.logits(images)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(runner.probabilities(images).sum(1), torch.ones(len(files)))


def test_decode_images_reports_each_bad_source(loaded: LoadedModel, files: list[Path]) -> None:
    images, errors = decode_images([files[0], b"junk", files[1]], loaded.preprocessing)
    assert images is not None and images.shape == (2, 3, 32, 32)
    assert errors[0] is None and errors[2] is None
    assert errors[1] is not None and "not a supported image" in errors[1]
    assert decode_images([b"junk"], loaded.preprocessing)[0] is None


def test_top_k_is_capped_at_the_classes() -> None:
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert top_k(probs, CLASSES, 2) == [
        (("dog", "fox"), pytest.approx((0.7, 0.2)), (1, 2)),
        (("cat", "fox"), pytest.approx((0.5, 0.3)), (0, 2)),
    ]
    assert [labels for labels, _, _ in top_k(probs, CLASSES, 10)][0] == ("dog", "fox", "cat")
    assert top_k(torch.empty(0, 3), CLASSES, 2) == []


def test_predictions_keep_the_order_and_name_bad_files(
    loaded: LoadedModel, files: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG nope")
    paths = [files[0], broken, *files[1:]]
    predictions = predict_files(loaded, paths, topk=2, batch_size=2)
    assert [p.path for p in predictions] == [str(p) for p in paths]
    assert predictions[1].error is not None and predictions[1].labels == ()
    assert predictions[1].to_dict() == {"path": str(broken), "error": predictions[1].error}
    good, probs, bad = predict_proba_files(loaded, paths, batch_size=4)
    assert bad == [(str(broken), predictions[1].error)] and len(good) == len(files)
    for p, row in zip([q for q in predictions if q.error is None], probs):
        assert p.labels[0] == CLASSES[int(row.argmax())] and len(p.labels) == 2
        assert p.probs[0] == pytest.approx(float(row.max()))


def test_batch_size_does_not_change_the_numbers(loaded: LoadedModel, files: list[Path]) -> None:
    _, one, _ = logits_for_files(loaded, files, batch_size=1)
    _, many, _ = logits_for_files(loaded, files, batch_size=64)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-4)


def test_nothing_readable_gives_empty_logits(loaded: LoadedModel, tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"no")
    good, logits, errors = logits_for_files(loaded, [bad])
    assert good == [] and logits.shape == (0, 3) and len(errors) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"topk": 0}, "--topk"), ({"batch_size": 0}, "--batch-size")]
)
def test_bad_settings(
    loaded: LoadedModel, files: list[Path], kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        predict_files(loaded, files, **kwargs)


def test_prediction_to_dict_rounds() -> None:
    p = Prediction(path="a.png", labels=("cat",), probs=(0.123456789,), indices=(0,))
    assert p.to_dict() == {"path": "a.png", "top": [{"label": "cat", "prob": 0.123457}]}


def _thin_png(path: Path, size: tuple[int, int] = (20_000, 1)) -> Path:
    from PIL import Image

    Image.new("RGB", size, (90, 30, 200)).save(path)  # 144 bytes on disk, 5 GB at 224 px
    return path


def test_a_thin_image_is_skipped_with_its_reason(
    loaded: LoadedModel, files: list[Path], tmp_path: Path
) -> None:
    thin = _thin_png(tmp_path / "thin.png")
    predictions = predict_files(loaded, [files[0], thin, files[1]], topk=1)
    assert predictions[1].error is not None and "thin.png" in predictions[1].error
    assert "\n" not in predictions[1].error
    assert predictions[0].error is None and predictions[2].error is None


@pytest.mark.parametrize(
    "failure",
    [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ...")],
    ids=["MemoryError", "torch-allocator"],
)
def test_an_image_out_of_memory_is_skipped_and_the_rest_go_on(
    loaded: LoadedModel,
    files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    import headstart.inference.predict as predict_module

    thin = _thin_png(tmp_path / "thin.png")
    real = predict_module.image_to_tensor

    def fake(source, *args, **kwargs):  # noqa: ANN001, ANN202 - the one decode function's shape
        if str(source) == str(thin) or source == b"thin":
            raise failure
        return real(source, *args, **kwargs)

    monkeypatch.setattr(predict_module, "image_to_tensor", fake)
    predictions = predict_files(loaded, [files[0], thin, files[1]], topk=1, batch_size=2)
    assert [p.error is None for p in predictions] == [True, False, True]
    assert predictions[1].error == (
        f"cannot read image {thin}: it is too large to decode into the model's 32x32 input "
        "(out of memory; an extremely thin or wide image?); crop or shrink it."
    )
    images, errors = decode_images([b"thin", files[2]], loaded.preprocessing)
    assert images is not None and len(images) == 1 and "image <bytes>" in str(errors[0])


def test_other_runtime_errors_are_not_taken_for_bad_images(
    loaded: LoadedModel, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headstart.inference.predict as predict_module

    def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("a bug, not a bad image")

    monkeypatch.setattr(predict_module, "image_to_tensor", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        decode_images([files[0]], loaded.preprocessing)
