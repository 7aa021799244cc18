"""Test-time augmentation: flips and five crops average the softmax of their views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.artifact import LoadedModel
from headstart.data.folders import Sample
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError
from headstart.inference.evaluate import evaluate_samples
from headstart.inference.predict import (
    CROPS_FRACTION,
    TTA_MODES,
    logits_for_files,
    predict_files,
    predict_proba_files,
    tta_preprocessing,
)
from tests.e2e_helpers import run_cli
from tests.inference.helpers import tiny_loaded

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    """The tiny model with a head sharp enough that a mirror image changes its answer."""
    model = tiny_loaded(CLASSES)
    with torch.no_grad():
        model.model.get_classifier().weight.mul_(100)
    return model


def _write(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def symmetric(tmp_path: Path) -> Path:
    half = np.random.default_rng(0).integers(0, 256, (40, 20, 3))
    return _write(tmp_path / "symmetric.png", np.concatenate([half, half[:, ::-1]], axis=1))


@pytest.fixture
def asymmetric(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (40, 40, 3))
    pixels[:, :14] = (230, 30, 30)  # a red band on the left only
    return _write(tmp_path / "asymmetric.png", pixels)


def _plain_probs(loaded: LoadedModel, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(loaded.model.eval()(image[None]), dim=1)[0]


def test_flip_of_a_symmetric_image_equals_plain(loaded: LoadedModel, symmetric: Path) -> None:
    _, plain, _ = predict_proba_files(loaded, [symmetric])
    _, flipped, _ = predict_proba_files(loaded, [symmetric], tta="flip")
    torch.testing.assert_close(flipped, plain, atol=1e-6, rtol=1e-5)


def test_flip_of_an_asymmetric_image_is_the_mean_of_both_passes(
    loaded: LoadedModel, asymmetric: Path
) -> None:
    _, plain, _ = predict_proba_files(loaded, [asymmetric])
    _, flipped, _ = predict_proba_files(loaded, [asymmetric], tta="flip")
    assert not torch.allclose(flipped, plain, atol=1e-4)
    image = image_to_tensor(asymmetric, loaded.preprocessing)
    expected = (_plain_probs(loaded, image) + _plain_probs(loaded, image.flip(-1))) / 2
    torch.testing.assert_close(flipped[0], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plain[0], _plain_probs(loaded, image), atol=1e-5, rtol=1e-4)


def test_crops_average_the_centre_and_the_four_corners(
    loaded: LoadedModel, asymmetric: Path
) -> None:
    wide = tta_preprocessing(loaded.preprocessing, "crops")
    assert wide.input_size == round(32 / CROPS_FRACTION) and wide.crop_pct == 1.0
    square = image_to_tensor(asymmetric, wide)
    size = loaded.preprocessing.input_size
    corners = [square[:, :size, :size], square[:, :size, -size:], square[:, -size:, :size],
               square[:, -size:, -size:]]  # fmt: skip
    top = int(round((square.shape[1] - size) / 2))  # as torchvision's centre crop
    centre = square[:, top : top + size, top : top + size]
    expected = torch.stack([_plain_probs(loaded, v) for v in [*corners, centre]]).mean(0)
    _, probs, _ = predict_proba_files(loaded, [asymmetric], tta="crops")
    torch.testing.assert_close(probs[0], expected, atol=1e-5, rtol=1e-4)


def test_crops_come_from_the_evaluation_resize_with_a_margin_at_least() -> None:
    from dataclasses import replace

    pre = tiny_loaded(CLASSES).preprocessing
    narrow = replace(pre, crop_pct=0.8)
    assert tta_preprocessing(narrow, "crops").input_size == narrow.resize_size == 40
    full = replace(pre, crop_pct=1.0)  # its own crop keeps everything: the corners would not move
    assert tta_preprocessing(full, "crops").input_size == round(32 / CROPS_FRACTION)
    assert tta_preprocessing(full, "flip") is full and tta_preprocessing(full, "none") is full


@pytest.mark.parametrize("tta", TTA_MODES)
def test_every_mode_gives_normalised_probabilities_and_top_k(
    loaded: LoadedModel, symmetric: Path, asymmetric: Path, tta: str
) -> None:
    good, probs, bad = predict_proba_files(loaded, [symmetric, asymmetric], tta=tta)
    assert bad == [] and probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    _, logits, _ = logits_for_files(loaded, [asymmetric], tta=tta)
    torch.testing.assert_close(torch.softmax(logits, 1), probs[1:])
    predictions = predict_files(loaded, [symmetric, asymmetric], topk=2, tta=tta)
    assert [p.probs[0] for p in predictions] == pytest.approx(probs.max(1).values.tolist())


def test_an_unknown_mode_says_which_there_are(loaded: LoadedModel, symmetric: Path) -> None:
    with pytest.raises(ConfigError, match="--tta 'mirror'; use one of none, flip, crops"):
        predict_files(loaded, [symmetric], tta="mirror")


def test_evaluation_scores_the_averaged_probabilities(
    loaded: LoadedModel, symmetric: Path, asymmetric: Path
) -> None:
    samples = [Sample(str(symmetric), 0), Sample(str(asymmetric), 2)]
    result = evaluate_samples(loaded, samples, tta="flip")
    _, probs, _ = predict_proba_files(loaded, [symmetric, asymmetric], tta="flip")
    expected_loss = -(probs[0, 0].log() + probs[1, 2].log()) / 2
    assert result.metrics["loss"] == pytest.approx(float(expected_loss), rel=1e-5)
    expected_acc = float((probs.argmax(1) == torch.tensor([0, 2])).float().mean())
    assert result.metrics["acc"] == pytest.approx(expected_acc)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    from headstart.artifact import save_model_dir
    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    torch.manual_seed(0)
    model, spec = create_backbone("timm:test_resnet", pretrained=False)
    model = replace_head(model, spec, len(CLASSES))
    pre = spec.preprocessing.with_size(32)
    return save_model_dir(tmp_path / "model", model, spec=spec, classes=CLASSES, preprocessing=pre)


def test_the_commands_take_tta(model_dir: Path, tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", CLASSES, n=2)
    code, out, err = run_cli(["predict", str(model_dir), str(data / "cat"), "--json",
                              "--tta", "flip"])  # fmt: skip
    assert code == 0, err
    plain = json.loads(run_cli(["predict", str(model_dir), str(data / "cat"), "--json"])[1])
    rows = json.loads(out)
    assert len(rows) == 2 and rows[0]["path"] == plain[0]["path"]
    assert abs(sum(t["prob"] for t in rows[0]["top"]) - 1) < 1e-4  # 3 classes, top 3
    code, _, err = run_cli(["evaluate", str(model_dir), str(data), "--out", str(tmp_path / "e"),
                            "--no-report", "--tta", "crops"])  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["tta"] == "crops"
    code, _, err = run_cli(["predict", str(model_dir), str(data), "--tta", "mirror"])
    assert code == 2 and "--tta" in err


def test_the_cli_choices_are_the_library_modes() -> None:
    from headstart.cli.predict import TtaMode

    assert tuple(mode.value for mode in TtaMode) == TTA_MODES
