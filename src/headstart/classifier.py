"""ImageClassifier: a scikit-learn style facade over the same machinery as the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.config import DEFAULT_MODEL, TrainConfig, build_config
from headstart.errors import HeadstartError

if TYPE_CHECKING:
    from headstart.artifact import LoadedModel

__all__ = ["ImageClassifier"]

PathLike = str | Path


class ImageClassifier:
    """Fine-tune a pretrained image classifier on a class-per-folder image directory.

    Args:
        model: Zoo model name (``bundled:efficientnet_lite0`` by default).
        strategy: ``feature-extract``, ``partial``, ``two-phase`` or ``full``.
        **settings: Any other ``TrainConfig`` field (``epochs``, ``lr``, ``image_size``, ...).

    Example:
        >>> clf = ImageClassifier(strategy="feature-extract", epochs=3).fit("photos/")
        >>> clf.predict(["photos/cat/1.jpg"])
    """

    def __init__(
        self, model: str = DEFAULT_MODEL, strategy: str = "two-phase", **settings: Any
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.settings = settings

    # --- scikit-learn conventions -------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments."""
        return {"model": self.model, "strategy": self.strategy, **self.settings}

    def _config(self, data: PathLike) -> tuple[TrainConfig, dict[str, str]]:
        values = {
            "model": self.model,
            "strategy": self.strategy,
            **self.settings,
            "data": str(data),
        }
        return build_config(cli_values=values)

    def fit(self, data: PathLike) -> ImageClassifier:
        """Train on ``data`` (an image folder or a built-in dataset name); returns ``self``."""
        from headstart.pipeline import train_run

        config, origin = self._config(data)
        result = train_run(config, origin)
        self.classes_ = result.classes
        self.model_ = result.model
        self.history_ = result.history
        self.preprocessing_ = result.preprocessing
        self.run_dir_ = result.run_dir
        self.name_ = result.spec.name
        self.meta_: dict[str, Any] = {"strategy": config.strategy.value}
        return self

    def _loaded(self) -> LoadedModel:
        from headstart.artifact import LoadedModel

        if not hasattr(self, "model_"):
            raise HeadstartError(
                "this ImageClassifier is not fitted yet; call fit() or load() first."
            )
        return LoadedModel(
            model=self.model_, classes=tuple(self.classes_), preprocessing=self.preprocessing_,
            name=self.name_, meta=self.meta_,
        )  # fmt: skip

    # --- inference ----------------------------------------------------------------------------
    def predict_proba(self, images: Sequence[PathLike] | PathLike) -> np.ndarray:
        """Class probabilities, shape (n_images, n_classes), in ``classes_`` order."""
        from headstart.data.folders import list_images
        from headstart.errors import DataError
        from headstart.inference.predict import predict_proba_files

        loaded = self._loaded()
        paths = list_images(_as_list(images))
        good, probs, bad = predict_proba_files(loaded, paths)
        if bad:
            raise DataError(f"cannot read {bad[0][0]}: {bad[0][1]}")
        return probs.numpy()

    def predict(self, images: Sequence[PathLike] | PathLike) -> np.ndarray:
        """The most likely class name for each image."""
        probs = self.predict_proba(images)
        return np.asarray(self.classes_, dtype=object)[probs.argmax(axis=1)]

    def score(self, data: PathLike) -> float:
        """Accuracy on a labelled folder (class sub-folders, or one with test/ or val/)."""
        from headstart.data.folders import load_eval_samples
        from headstart.inference.evaluate import evaluate_samples

        samples = load_eval_samples(data, self.classes_)
        return float(evaluate_samples(self._loaded(), samples).metrics["acc"])

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """Write the model directory (model.safetensors + headstart.json)."""
        from headstart.artifact import save_model_dir
        from headstart.zoo import create_backbone

        loaded = self._loaded()
        _, spec = create_backbone(self.name_, pretrained=False)
        return save_model_dir(
            path, loaded.model, spec=spec, classes=loaded.classes,
            preprocessing=loaded.preprocessing, extra=self.meta_,
        )  # fmt: skip

    @classmethod
    def load(cls, path: PathLike) -> ImageClassifier:
        """Load a model directory or a run folder written by headstart."""
        from headstart.artifact import load_model_dir
        from headstart.inference.load import find_model_dir

        loaded = load_model_dir(find_model_dir(path) or path)
        clf = cls(model=loaded.name, strategy=str(loaded.meta.get("strategy", "two-phase")))
        clf.classes_ = loaded.classes
        clf.model_ = loaded.model
        clf.history_ = []
        clf.preprocessing_ = loaded.preprocessing
        clf.name_ = loaded.name
        clf.meta_ = {k: v for k, v in loaded.meta.items() if k in ("strategy", "metrics")}
        return clf


def _as_list(images: Sequence[PathLike] | PathLike) -> list[PathLike]:
    if isinstance(images, (str, Path)):
        return [images]
    return list(images)
