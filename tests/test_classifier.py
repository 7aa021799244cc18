"""ImageClassifier round trip: fit -> predict -> save -> load -> same predictions (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from headstart import ImageClassifier
from headstart.errors import HeadstartError, ModelError
from tests.e2e_helpers import TINY_MODEL, tiny_weights


def test_fit_predict_save_load_round_trip(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("red", "green", "blue"), n=10, layout="split")
    clf = ImageClassifier(
        model=TINY_MODEL, strategy="feature-extract", weights=str(tiny_weights(tmp_path)),
        epochs=2, image_size=32, batch_size=8, lr=0.05, out=str(tmp_path / "run"),
    )  # fmt: skip
    assert clf.fit(data) is clf
    assert clf.classes_ == ("blue", "green", "red")
    assert len(clf.history_) == 2
    images = sorted((data / "val").rglob("*.png"))
    proba = clf.predict_proba(images)
    assert proba.shape == (len(images), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    labels = clf.predict(images)
    assert set(labels) <= set(clf.classes_)
    score = clf.score(data)
    assert 0.0 <= score <= 1.0

    saved = clf.save(tmp_path / "saved")
    again = ImageClassifier.load(saved)
    assert again.classes_ == clf.classes_
    np.testing.assert_allclose(again.predict_proba(images), proba, atol=1e-6)
    for a, b in zip(clf.model_.state_dict().values(), again.model_.state_dict().values()):
        assert torch.equal(a, b)
    # the run folder itself loads too
    from_run = ImageClassifier.load(tmp_path / "run")
    np.testing.assert_allclose(from_run.predict_proba(images), proba, atol=1e-6)


def test_unfitted_classifier_says_so() -> None:
    with pytest.raises(HeadstartError, match="not fitted"):
        ImageClassifier().predict(["x.png"])


def test_loading_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a headstart model"):
        ImageClassifier.load(tmp_path)
