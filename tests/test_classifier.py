"""ImageClassifier: scikit-learn's conventions, fit on a folder or on (paths, labels), the round
trip fit -> predict -> save -> load -> same predictions (offline, tiny model)."""

from __future__ import annotations

import gc
import pickle
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart import ImageClassifier
from headstart.config import TrainConfig
from headstart.errors import ConfigError, DataError, HeadstartError, ModelError
from tests.e2e_helpers import TINY_MODEL, tiny_weights

LABELS = {"red": 10, "green": 2, "blue": 33}
"""Whole-number labels whose text order (10, 2, 33) is not their order (2, 10, 33)."""


def _tiny(tmp_path: Path, **params) -> ImageClassifier:
    """A classifier that learns the generated colours in three short epochs."""
    settings = {"strategy": "feature-extract", "epochs": 3, "image_size": 32, "batch_size": 8,
                "lr": 0.3, **params}  # fmt: skip
    return ImageClassifier(TINY_MODEL, weights=str(tiny_weights(tmp_path)), **settings)


def _paths_and_labels(folder: Path) -> tuple[list[Path], list[int]]:
    paths = sorted(folder.rglob("*.png"))
    return paths, [LABELS[p.parent.name] for p in paths]


# --- parameters ------------------------------------------------------------------------------


def test_the_parameters_are_the_training_settings_with_their_defaults() -> None:
    params = ImageClassifier().get_params()
    settings = TrainConfig().to_dict()
    del settings["data"]  # given to fit
    assert list(params) == list(settings)  # same names, same order: nothing can drift
    assert params.pop("out") is None  # fit writes no runs/ unless asked
    for name, value in params.items():
        assert value == settings[name] and type(value) is type(settings[name]), name
    assert TrainConfig(**params) == TrainConfig()
    assert len(fields(TrainConfig)) == len(params) + 2


def test_scikit_learn_checks_that_apply_to_an_estimator_of_image_paths() -> None:
    from sklearn.base import clone, is_classifier
    from sklearn.utils import estimator_checks as checks

    clf = ImageClassifier(TINY_MODEL, epochs=4, lr="auto", out="runs/x")
    for check in (
        checks.check_estimator_cloneable, checks.check_estimator_repr,
        checks.check_no_attributes_set_in_init, checks.check_parameters_default_constructible,
        checks.check_get_params_invariance, checks.check_set_params,
    ):  # fmt: skip
        check("ImageClassifier", clf)
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    assert is_classifier(clf)
    assert repr(clf) == (
        "ImageClassifier(model='timm:test_resnet', epochs=4, lr='auto', out='runs/x')"
    )


def test_set_params_returns_self_and_refuses_unknown_names() -> None:
    clf = ImageClassifier()
    assert clf.set_params(epochs=2, strategy="full") is clf
    assert (clf.epochs, clf.strategy) == (2, "full")
    with pytest.raises(ConfigError, match=r"unknown ImageClassifier parameter 'epoch'.*epochs"):
        clf.set_params(batch_size=4, epoch=3)
    assert clf.batch_size == 32  # nothing changed


def test_values_are_checked_by_fit_not_by_the_constructor(tmp_path: Path, image_folder_factory):
    clf = ImageClassifier(epochs=-1, strategy="sideways")  # stored as given (scikit-learn's rule)
    assert clf.epochs == -1
    data = image_folder_factory(tmp_path / "data")
    with pytest.raises(ConfigError, match="unknown strategy 'sideways'"):
        clf.fit(data)


# --- fit's inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (["a.png", "b.png"], None, "2 image files and no labels"),
        ("FOLDER", ["cat"], "a folder's classes are its sub-folders"),
        (["IMAGE"], ["cat", "dog"], "1 images and 2 labels"),
        (["FOLDER"], ["cat"], "takes image files, and .* is a folder"),
        (["IMAGE", "IMAGE"], ["cat", 1], r"all whole numbers; got 1 \(int\)"),
        (["IMAGE", "IMAGE"], [True, False], r"got True \(bool\)"),
        (["IMAGE", "IMAGE"], ["cat", "cat"], "at least 2 classes; y holds 1 \\(cat\\)"),
        (["IMAGE", "missing.png"], ["cat", "dog"], "missing.png"),
    ],
)
def test_fit_refuses_inputs_it_cannot_use(X, y, message, tmp_path: Path, image_folder_factory):
    data = image_folder_factory(tmp_path / "data")
    image = next(data.rglob("*.png"))
    swap = {"FOLDER": data, "IMAGE": image}
    X = swap.get(X, X) if isinstance(X, str) else [swap.get(x, tmp_path / x) for x in X]
    with pytest.raises(DataError, match=message):
        ImageClassifier().fit(X, y)


def test_the_run_folder_is_never_written_among_the_given_images(
    tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("red", "green"))
    paths, labels = _paths_and_labels(data)
    clf = ImageClassifier(TINY_MODEL, weights=str(tiny_weights(tmp_path)), out=data / "red" / "run")
    with pytest.raises(ConfigError, match="inside the data folder"):
        clf.fit(paths, labels)
    assert not (data / "red" / "run").exists()


# --- fit, predict, score, save, load -----------------------------------------------------------


def test_fit_on_paths_and_whole_number_labels(
    tmp_path: Path, image_folder_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.base import clone

    data = image_folder_factory(tmp_path / "data", tuple(LABELS), n=8)
    paths, labels = _paths_and_labels(data)
    clf = _tiny(tmp_path)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert clf.fit([str(p) for p in paths], np.asarray(labels)) is clf
    assert list((tmp_path / "cwd").iterdir()) == []  # no runs/ here
    assert clf.classes_.tolist() == [2, 10, 33] and clf.classes_.dtype.kind == "i"

    proba = clf.predict_proba(paths)
    predicted = clf.predict(paths)
    assert proba.shape == (len(paths), 3) and predicted.dtype.kind == "i"
    assert predicted.tolist() == labels  # columns follow classes_, not the text order of the names
    assert clf.score(paths, labels) == 1.0
    assert clf.score(paths[:2], ["blue", 33]) == 0.5  # a label of another type is just wrong

    run = clf.run_dir_
    assert run is not None and (run / "model").is_dir()
    assert clf.out is None and not run.is_relative_to(data)
    from_run = ImageClassifier.load(run)  # the run folder's model names its classes as text
    assert from_run.classes_.tolist() == ["2", "10", "33"]
    assert from_run.predict(paths).tolist() == [str(label) for label in labels]
    again = ImageClassifier.load(clf.save(tmp_path / "saved"))
    assert again.classes_.tolist() == [2, 10, 33] and again.predict(paths).tolist() == labels
    np.testing.assert_allclose(again.predict_proba(paths), proba, atol=1e-6)
    unpickled = pickle.loads(pickle.dumps(clf))
    assert unpickled.run_dir_ is None  # the temporary folder stays the original's
    np.testing.assert_allclose(unpickled.predict_proba(paths[:3]), proba[:3], atol=1e-6)
    fresh = clone(clf)
    assert not hasattr(fresh, "classes_") and fresh.get_params() == clf.get_params()

    del clf, unpickled
    gc.collect()
    assert not run.exists()  # the temporary run folder went with the classifier
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_fit_predict_save_load_round_trip(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("red", "green", "blue"), n=10, layout="split")
    clf = _tiny(tmp_path, out=str(tmp_path / "run"))
    assert clf.fit(data) is clf
    assert clf.run_dir_ == tmp_path / "run"
    assert clf.classes_.tolist() == ["blue", "green", "red"] and clf.classes_.dtype.kind == "U"
    assert len(clf.history_) == 3
    images = sorted((data / "val").rglob("*.png"))
    proba = clf.predict_proba(images)
    assert proba.shape == (len(images), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.predict(images).tolist() == [p.parent.name for p in images]
    assert clf.score(data) == 1.0

    saved = clf.save(tmp_path / "saved")
    again = ImageClassifier.load(saved)
    assert again.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_allclose(again.predict_proba(images), proba, atol=1e-6)
    for a, b in zip(clf.model_.state_dict().values(), again.model_.state_dict().values()):
        assert torch.equal(a, b)
    # the run folder itself loads too
    from_run = ImageClassifier.load(tmp_path / "run")
    np.testing.assert_allclose(from_run.predict_proba(images), proba, atol=1e-6)
    del clf
    gc.collect()
    assert (tmp_path / "run" / "model").is_dir()  # a run folder asked for is kept


def test_cross_validation_clones_and_fits_on_paths(tmp_path: Path, image_folder_factory) -> None:
    from sklearn.model_selection import cross_val_score

    data = image_folder_factory(tmp_path / "data", ("red", "blue"), n=6)
    paths, labels = _paths_and_labels(data)
    scores = cross_val_score(_tiny(tmp_path, epochs=1), paths, labels, cv=2, error_score="raise")
    assert scores.shape == (2,) and ((0.0 <= scores) & (scores <= 1.0)).all()


def test_unfitted_classifier_says_so() -> None:
    with pytest.raises(HeadstartError, match="not fitted"):
        ImageClassifier().predict(["x.png"])


def test_loading_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a headstart model"):
        ImageClassifier.load(tmp_path)
