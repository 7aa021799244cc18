"""ImageClassifier: a scikit-learn style estimator over the same machinery as the CLI.

It follows scikit-learn's conventions where images allow: every setting is a named constructor
parameter (``get_params`` / ``set_params`` / ``sklearn.base.clone`` work), ``fit`` validates and
returns ``self``, learned state ends in ``_`` (``classes_``, ``model_``, ``history_``), and
``predict_proba``'s columns follow ``classes_``. Inputs are image files, not feature arrays, so
there is no ``n_features_in_``.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.config import DEFAULT_MODEL, TrainConfig, build_config
from headstart.errors import ConfigError, DataError, HeadstartError, closest

if TYPE_CHECKING:
    from headstart.artifact import LoadedModel
    from headstart.data.folders import DataSplits

__all__ = ["ImageClassifier"]

PathLike = str | Path
Images = PathLike | Sequence[PathLike]
"""A folder of images (searched recursively) or image files."""
_INT_LABELS = "int"
"""``class_labels`` in headstart.json when fit was given whole numbers as labels."""


class ImageClassifier:
    """Fine-tune a pretrained image classifier on image folders, or on image files with labels.

    Every parameter is the training setting of the same name (``TrainConfig``; on the command
    line ``--the-name``) with its default, and is only checked by ``fit``. A parameter left at its
    default counts as not set, so ``budget`` may plan it.

    Args:
        model: Zoo model name (``bundled:efficientnet_lite0`` by default).
        weights: A local weight file for ``model`` instead of its pretrained download.
        strategy: ``feature-extract``, ``partial``, ``two-phase`` or ``full``.
        out: Where ``fit`` writes its run folder (it must not exist, or be empty). ``None``: a
            temporary folder, ``run_dir_``, removed when the classifier is garbage-collected;
            ``save`` keeps the model.

    Attributes:
        classes_: The classes, sorted (``numpy.unique`` order); the labels ``predict`` returns,
            of the type ``fit`` was given (class folders give text).
        model_: The trained network (``torch.nn.Module``, on the CPU, in eval mode).
        history_: One dict of metrics per epoch.
        run_dir_: The run folder (report, metrics.csv, checkpoints); ``None`` after ``load``.

    Example:
        >>> clf = ImageClassifier(strategy="feature-extract", epochs=3).fit("photos/")
        >>> clf.predict(["photos/cat/1.jpg"])
    """

    _estimator_type = "classifier"  # scikit-learn before 1.6 reads this; later, the tags
    out: PathLike | None  # the one parameter read by name (the others go through get_params)

    # long: one named parameter per setting, as scikit-learn's get_params reads the signature
    def __init__(
        self, model: str = DEFAULT_MODEL, *, weights: str | None = None,
        strategy: str = "two-phase", unfreeze_stages: int = 1, epochs: int = 10,
        head_epochs: int = 3, image_size: int | None = None, batch_size: int = 32,
        lr: float | str = 1e-2, finetune_lr_factor: float = 0.1, backbone_lr_factor: float = 1.0,
        layer_decay: float = 0.7,
        optimizer: str = "adamw", weight_decay: float = 0.01, momentum: float = 0.9,
        label_smoothing: float = 0.1, warmup_epochs: float = 1.0, patience: int = 5,
        monitor: str = "val_acc", augment: str = "light", hflip: bool | None = True,
        random_erasing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0, ema: bool = False,
        ema_decay: float = 0.999, schedule: str = "cosine", accumulate: int = 1,
        clip_grad: float = 0.0, class_weights: str = "none", sampler: str = "shuffle",
        budget: str | None = None, bn_stats: str = "pretrained", val_fraction: float = 0.2,
        test_fraction: float = 0.0, seed: int = 0, out: PathLike | None = None,
        num_workers: int | str = "auto", accelerator: str = "auto", precision: str = "auto",
        devices: int | str = 1, num_nodes: int = 1, distributed: str = "auto",
        max_bad_fraction: float = 0.1, tensorboard: bool = False, cache: bool = True,
        cache_budget: str | None = None, checkpoint_every_steps: int = 500, tracker: str = "",
        mlflow_uri: str | None = None,
        mlflow_experiment: str = "headstart", wandb_project: str = "headstart",
        wandb_mode: str | None = None,
    ) -> None:  # fmt: skip
        params = dict(locals())
        del params["self"]
        for name, value in params.items():  # stored as given, checked by fit (scikit-learn's rule)
            setattr(self, name, value)

    # --- scikit-learn conventions -------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their values (``deep`` changes nothing: no parameter
        is itself an estimator)."""
        return {name: getattr(self, name) for name in _defaults(type(self))}

    def set_params(self, **params: Any) -> ImageClassifier:
        """Change parameters by name; returns ``self``. Values are checked by ``fit``.

        Raises:
            ConfigError: A name is not a parameter (nothing is changed then).
        """
        names = list(_defaults(type(self)))
        for name in params:
            if name not in names:
                raise ConfigError(
                    f"unknown ImageClassifier parameter {name!r}; ImageClassifier().get_params() "
                    f"lists them.{closest(name, names)}"
                )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = self.get_params().items()
        changed = [f"{k}={v!r}" for k, v in params if not _is_default(type(self), k, v)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (only scikit-learn asks, so it is installed): a classifier of
        image paths, with labels unless it is fitted on a folder."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier", target_tags=TargetTags(required=False, one_d_labels=True),
            classifier_tags=ClassifierTags(), non_deterministic=True,
            input_tags=InputTags(one_d_array=True, two_d_array=False, string=True),
        )  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        """Pickled or copied, a classifier leaves its temporary run folder to the original."""
        state = self.__dict__.copy()
        if state.pop("_tmp", None) is not None:
            state["run_dir_"] = None
        return state

    # --- training -----------------------------------------------------------------------------
    def fit(self, X: Images, y: Sequence[Any] | None = None) -> ImageClassifier:
        """Train; returns ``self``.

        Args:
            X: A data folder (class sub-folders, or ``train/`` + ``val/`` [+ ``test/``]) or the
                name of a built-in dataset, with ``y`` None; or image files with ``y``.
            y: One label per image of ``X``: class names (text) or whole numbers.

        Raises:
            HeadstartError: A parameter, the data or the model cannot be used (one line saying
                how to fix it).
        """
        from headstart.pipeline import train_run

        if y is None:
            data, files = _folder(X, "fit"), []
        else:
            data, files = "", _files(X, y, "fit")
        tmp = None if self.out is not None else _temporary_folder()
        out = str(self.out) if tmp is None else str(Path(tmp.name) / "run")
        config, origin = self._config(data, out)
        if y is None:
            result = train_run(config, origin)
            classes = np.asarray(result.classes)
        else:
            classes, splits = _sample_splits(files, y, config)
            result = train_run(config, origin, splits=splits)
        self.classes_ = classes
        self.model_ = result.model
        self.history_ = result.history
        self.preprocessing_ = result.preprocessing
        self.run_dir_: Path | None = result.run_dir
        self.name_ = result.spec.name
        self.meta_: dict[str, Any] = {
            "strategy": config.strategy.value,
            "metrics": {"val": result.best_metrics, "test": result.test_metrics},
            **({"class_labels": _INT_LABELS} if classes.dtype.kind in "iu" else {}),
        }
        self._tmp = tmp  # the temporary run folder lives as long as the classifier
        return self

    def _config(self, data: PathLike, out: str) -> tuple[TrainConfig, dict[str, str]]:
        """The settings: the parameters changed from their defaults (origin "cli"), data, out."""
        params = self.get_params().items()
        values = {k: v for k, v in params if k != "out" and not _is_default(type(self), k, v)}
        return build_config(cli_values={**values, "data": str(data), "out": out})

    def _loaded(self) -> LoadedModel:
        from headstart.artifact import LoadedModel

        if not hasattr(self, "model_"):
            raise HeadstartError(
                "this ImageClassifier is not fitted yet; call fit() or load() first."
            )
        return LoadedModel(
            model=self.model_, classes=tuple(str(c) for c in self.classes_),
            preprocessing=self.preprocessing_, name=self.name_, meta=self.meta_,
        )  # fmt: skip

    # --- inference ----------------------------------------------------------------------------
    def predict_proba(self, X: Images) -> np.ndarray:
        """Class probabilities, shape (n_images, n_classes); column ``j`` is ``classes_[j]``.

        Raises:
            DataError: An image cannot be read.
        """
        from headstart.data.folders import list_images
        from headstart.inference.predict import predict_proba_files

        loaded = self._loaded()
        good, probs, bad = predict_proba_files(loaded, list_images(X))
        if bad:
            raise DataError(f"cannot read {bad[0][0]}: {bad[0][1]}")
        return probs.numpy()

    def predict(self, X: Images) -> np.ndarray:
        """The most likely class of each image, as the labels ``fit`` was given."""
        probs = self.predict_proba(X)  # says first when the classifier is not fitted
        return self.classes_[probs.argmax(axis=1)]

    def score(self, X: Images, y: Sequence[Any] | None = None) -> float:
        """Accuracy on a labelled folder (its ``test/``, else ``val/``, else its class folders)
        with ``y`` None, or on image files ``X`` with their labels ``y``."""
        if y is None:
            from headstart.data.folders import load_eval_samples
            from headstart.inference.evaluate import evaluate_samples

            loaded = self._loaded()
            samples = load_eval_samples(_folder(X, "score"), loaded.classes)
            return float(evaluate_samples(loaded, samples).metrics["acc"])
        predicted = self.predict(_files(X, y, "score"))
        return float(np.mean(predicted.astype(object) == np.asarray(list(y), dtype=object)))

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """Write the model directory (model.safetensors + headstart.json); returns its path."""
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
        """Load a model directory or a run folder written by headstart (or by ``save``)."""
        from headstart.artifact import load_model_dir
        from headstart.inference.load import find_model_dir

        loaded = load_model_dir(find_model_dir(path) or path)
        clf = cls(model=loaded.name, strategy=str(loaded.meta.get("strategy", "two-phase")))
        ints = loaded.meta.get("class_labels") == _INT_LABELS
        clf.classes_ = np.asarray([int(c) for c in loaded.classes] if ints else loaded.classes)
        clf.model_ = loaded.model
        clf.history_ = []
        clf.preprocessing_ = loaded.preprocessing
        clf.run_dir_ = None
        clf.name_ = loaded.name
        clf.meta_ = {
            k: v for k, v in loaded.meta.items() if k in ("strategy", "metrics", "class_labels")
        }
        return clf


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _defaults(cls: type[ImageClassifier]) -> dict[str, Any]:
    """The constructor's parameters and defaults, read from its signature as scikit-learn does."""
    if cls not in _DEFAULTS:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        _DEFAULTS[cls] = {p.name: p.default for p in parameters}
    return _DEFAULTS[cls]


def _is_default(cls: type[ImageClassifier], name: str, value: Any) -> bool:
    default = _defaults(cls)[name]
    return type(value) is type(default) and value == default


def _temporary_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="headstart-fit-", ignore_cleanup_errors=True)


def _count(X: Any) -> str:
    return str(len(X)) if hasattr(X, "__len__") else "some"


def _folder(X: Images, method: str) -> PathLike:
    if not isinstance(X, (str, Path)):
        raise DataError(
            f"{method} got {_count(X)} image files and no labels; pass their labels as y, or "
            f"pass a labelled folder alone: {method}('photos/')."
        )
    return X


def _files(X: Images, y: Sequence[Any], method: str) -> list[Path]:
    """The image files of ``X``, one per label of ``y``, each checked to be an image."""
    from headstart.data.folders import list_images

    if isinstance(X, (str, Path)):
        raise DataError(
            f"{method} got the folder {X} and labels y; a folder's classes are its sub-folders: "
            f"drop y, or pass image files with their labels."
        )
    items = [Path(p).expanduser() for p in X]
    folders = [p for p in items if p.is_dir()]
    if folders:
        raise DataError(
            f"{method} with labels y takes image files, and {folders[0]} is a folder; pass its "
            "images, or the data folder alone without y."
        )
    if len(items) != len(y):
        raise DataError(
            f"{method} got {len(items)} images and {len(y)} labels; give one label per image."
        )
    return list_images(items) if items else []


def _labels(y: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``classes_`` (sorted, of the labels' type) and each label's index into it.

    Raises:
        DataError: Labels that are neither all text nor all whole numbers, or fewer than 2 classes.
    """
    values = list(y)
    text = bool(values) and isinstance(values[0], str)
    odd = next((v for v in values if (isinstance(v, str) != text) or _not_whole(v, text)), None)
    if odd is not None:
        raise DataError(
            f"labels must be all class names (text) or all whole numbers; got {odd!r} "
            f"({type(odd).__name__}) among {'text' if text else 'whole numbers'}."
        )
    classes, index = np.unique(np.asarray(values), return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"a classifier needs at least 2 classes; y holds {len(classes)} "
            f"({', '.join(map(str, classes)) or 'none'})."
        )
    return classes, index


def _not_whole(value: Any, text: bool) -> bool:
    if text:
        return False
    return not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_))


def _sample_splits(
    files: list[Path], y: Sequence[Any], config: TrainConfig
) -> tuple[np.ndarray, DataSplits]:
    """``classes_`` and the seeded stratified splits of image files and their labels."""
    from headstart.data.folders import DataSplits, stratified_split

    paths = [p.absolute() for p in files]
    classes, index = _labels(y)
    names = tuple(str(c) for c in classes)
    per_class: dict[str, list[Path]] = {name: [] for name in names}
    for path, i in zip(paths, index):
        per_class[names[i]].append(path)
    train, val, test = stratified_split(
        per_class, names, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
        seed=config.seed,
    )  # fmt: skip
    origin = {
        "layout": "samples",  # headstart writes nothing into the folders holding the images
        "dirs": {str(d): str(d) for d in sorted({p.parent for p in paths})},
        "val_fraction": config.val_fraction, "test_fraction": config.test_fraction,
        "seed": config.seed,
    }  # fmt: skip
    return classes, DataSplits(names, train, val, test, origin)
