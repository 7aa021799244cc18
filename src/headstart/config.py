"""User settings as frozen dataclasses, with YAML load/dump and provenance (no torch import)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from headstart.errors import ConfigError, closest

__all__ = [
    "RESUME_FREE", "RESUME_INEXACT", "Augment", "BnStats", "ClassWeights", "Distributed",
    "Optimizer", "Sampler", "Schedule", "Strategy", "TRACKERS", "TrainConfig", "parse_duration",
    "build_config", "config_text", "load_config", "parse_config_text",
]  # fmt: skip


class Strategy(str, Enum):
    """Transfer-learning strategies (CLI words)."""

    FEATURE_EXTRACT = "feature-extract"
    PARTIAL = "partial"
    TWO_PHASE = "two-phase"
    FULL = "full"


class Optimizer(str, Enum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class BnStats(str, Enum):
    """What BatchNorm running statistics do during training (the one BatchNorm setting).

    ``pretrained``: they never move (layers of trainable stages still learn their affine weights).
    ``adapt``: norm layers of trainable stages update them on the new data; frozen stages never do.
    """

    PRETRAINED = "pretrained"
    ADAPT = "adapt"


class Augment(str, Enum):
    """Named training augmentation presets (see ``data.transforms``)."""

    NONE = "none"
    LIGHT = "light"
    STANDARD = "standard"
    TRIVIAL = "trivial"
    RANDAUGMENT = "randaugment"


class Schedule(str, Enum):
    """Learning-rate schedules of a phase, each after a linear warm-up."""

    COSINE = "cosine"
    ONECYCLE = "onecycle"
    STEP = "step"
    CONSTANT = "constant"


class ClassWeights(str, Enum):
    """Loss weights per class: ``balanced`` weighs each class by the inverse of its count."""

    NONE = "none"
    BALANCED = "balanced"


class Distributed(str, Enum):
    """How several processes train one model: ``auto`` is DDP when there are several."""

    AUTO = "auto"
    DDP = "ddp"


class Sampler(str, Enum):
    """How training batches are drawn: a shuffle of every image once, or class-balanced draws."""

    SHUFFLE = "shuffle"
    BALANCED = "balanced"


DEFAULT_MODEL = "bundled:efficientnet_lite0"
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
MONITORS = ("val_acc", "val_loss", "val_f1")
MAX_IMAGE_SIZE = 2048
"""Largest --image-size: beyond it one batch needs more memory than machines have (the largest
pretrained classifiers take 800 px)."""
_WHOLE = {  # setting: (lowest, highest)
    "unfreeze_stages": (0, 1_000),
    "epochs": (1, 100_000),
    "head_epochs": (0, 100_000),
    "image_size": (8, MAX_IMAGE_SIZE),
    "batch_size": (1, 65_536),
    "patience": (0, 100_000),
    "seed": (0, 2**32 - 1),
    "num_workers": (0, 256),
    "checkpoint_every_steps": (0, 10**9),
    "accumulate": (1, 1_024),
    "devices": (1, 4_096),
    "num_nodes": (1, 100_000),
}
"""Ranges of the whole-number settings, the same for the command line, YAML and Python."""
_REAL = {  # setting: (lowest, highest, lowest allowed?, highest allowed?)
    "lr": (0.0, math.inf, False, False),
    "backbone_lr_factor": (0.0, math.inf, True, False),
    "finetune_lr_factor": (0.0, math.inf, False, False),
    "layer_decay": (0.0, 1.0, False, True),
    "weight_decay": (0.0, math.inf, True, False),
    "momentum": (0.0, 1.0, True, False),
    "label_smoothing": (0.0, 1.0, True, False),
    "warmup_epochs": (0.0, math.inf, True, False),
    "val_fraction": (0.0, 1.0, False, False),
    "test_fraction": (0.0, 1.0, True, False),
    "max_bad_fraction": (0.0, 1.0, True, True),
    "random_erasing": (0.0, 1.0, True, True),
    "mixup": (0.0, math.inf, True, False),
    "cutmix": (0.0, math.inf, True, False),
    "ema_decay": (0.0, 1.0, False, False),
    "clip_grad": (0.0, math.inf, True, False),
}
"""Ranges of the real-valued settings; every one must also be finite (no nan, no inf)."""
TRACKERS = ("tensorboard", "mlflow", "wandb")
"""What ``tracker`` (a comma list) may name; ``tensorboard`` is also the ``tensorboard`` switch."""
WANDB_MODES = ("online", "offline")
RESUME_FREE = ("data", "out", "checkpoint_every_steps", "tracker", "mlflow_uri",
               "mlflow_experiment", "wandb_project", "wandb_mode")
"""Settings that may change when a run is resumed without changing its result."""
RESUME_INEXACT = ("num_workers", "accelerator", "precision", "devices", "num_nodes", "distributed",
                  "cache_budget")  # fmt: skip
"""Settings that may change on resume, with a warning that the result is no longer bit-exact."""
AUTO = "auto"
"""The value of ``lr`` (and ``hflip`` on the command line) that lets headstart decide."""
_RENAMED = {"feature_cache": "cache"}
"""Old names of settings, still read from YAML files and checkpoints."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Defaults are the ones a new user gets.

    ``epochs`` counts every epoch; two-phase trains the head alone for up to ``head_epochs`` of
    them (leaving one to fine-tune; with one epoch, only the head trains). ``lr`` is the head's
    learning rate (two-phase's fine-tuning phase: ``lr * finetune_lr_factor``); body stages that
    train get the phase's ``lr * backbone_lr_factor``, decayed by ``layer_decay`` per stage towards
    the input (discriminative learning rates).
    ``cache`` turns on the decoded-image cache and, for phases that train the head only, the
    feature cache (the frozen body runs once per image), within ``cache_budget`` (``"10GiB"``;
    None: ``$HEADSTART_CACHE_BUDGET``, else ``files.DEFAULT_CACHE_BUDGET``). ``lr`` may be
    ``"auto"`` (a learning-rate sweep picks it) and ``hflip`` ``None`` (decided from the data);
    ``budget`` (``"90s"``, ``"10m"``, ``"1h30m"``) lets the planner choose what the user did not
    set.
    """

    data: str = ""
    model: str = DEFAULT_MODEL
    weights: str | None = None
    strategy: Strategy = Strategy.TWO_PHASE
    unfreeze_stages: int = 1
    epochs: int = 10
    head_epochs: int = 3
    image_size: int | None = None
    batch_size: int = 32
    lr: float | str = 1e-2
    finetune_lr_factor: float = 0.1
    backbone_lr_factor: float = 1.0
    layer_decay: float = 0.7
    optimizer: Optimizer = Optimizer.ADAMW
    weight_decay: float = 0.01
    momentum: float = 0.9
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    patience: int = 5
    monitor: str = "val_acc"
    augment: Augment = Augment.LIGHT
    hflip: bool | None = True
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: bool = False
    ema_decay: float = 0.999
    schedule: Schedule = Schedule.COSINE
    accumulate: int = 1
    clip_grad: float = 0.0
    class_weights: ClassWeights = ClassWeights.NONE
    sampler: Sampler = Sampler.SHUFFLE
    budget: str | None = None
    bn_stats: BnStats = BnStats.PRETRAINED
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0
    out: str = "runs/run"
    num_workers: int | str = "auto"
    accelerator: str = "auto"
    precision: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    distributed: Distributed = Distributed.AUTO
    max_bad_fraction: float = 0.1
    tensorboard: bool = False
    cache: bool = True
    cache_budget: str | None = None
    checkpoint_every_steps: int = 500
    tracker: str = ""
    mlflow_uri: str | None = None
    mlflow_experiment: str = "headstart"
    wandb_project: str = "headstart"
    wandb_mode: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracker", _tracker_list(self.tracker))
        for name, enum in (
            ("strategy", Strategy),
            ("optimizer", Optimizer),
            ("augment", Augment),
            ("bn_stats", BnStats),
            ("schedule", Schedule),
            ("class_weights", ClassWeights),
            ("sampler", Sampler),
            ("distributed", Distributed),
        ):
            value = getattr(self, name)
            if not isinstance(value, enum):
                object.__setattr__(self, name, _to_enum(enum, value, name))
        _check_types(self)
        _check_ranges(self)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("--val-fraction plus --test-fraction must leave images to train on.")
        if self.budget is not None:
            parse_duration(self.budget)
        for name in ("mlflow_experiment", "wandb_project"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{_flag(name)} must name an experiment / project, got ''.")
        for name, choices in (
            ("accelerator", ACCELERATORS), ("precision", PRECISIONS), ("monitor", MONITORS),
            ("wandb_mode", WANDB_MODES),
        ):  # fmt: skip
            value = getattr(self, name)
            if value not in choices and not (value is None and name in _OPTIONAL):
                raise ConfigError(
                    f"unknown {_flag(name)} {value!r}; use one of {', '.join(choices)}."
                    f"{closest(value, choices)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly dict (enums become their CLI words)."""
        return {
            f.name: (v.value if isinstance(v, Enum) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _tracker_list(value: Any) -> Any:
    """``tracker`` as one comma list of known names ("mlflow,wandb"), from text or a list."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        return value  # the type check says what is wrong
    names: list[str] = []
    for name in (part.strip().lower() for part in value.split(",")):
        if name and name not in TRACKERS:
            raise ConfigError(
                f"unknown --tracker {name!r}; use one of {', '.join(TRACKERS)} (several: "
                f"--tracker mlflow --tracker wandb, or mlflow,wandb).{closest(name, TRACKERS)}"
            )
        if name and name not in names:
            names.append(name)
    return ",".join(names)


def _to_enum(enum: type[Enum], value: Any, name: str) -> Enum:
    try:
        return enum(value)
    except ValueError:
        words = [str(m.value) for m in enum]  # type: ignore[var-annotated]
        raise ConfigError(
            f"unknown {name} {value!r}; use one of {', '.join(words)}.{closest(str(value), words)}"
        ) from None


def _check_types(config: TrainConfig) -> None:
    """Every setting has its type (whole numbers are not booleans; reals become floats)."""
    for f in fields(config):
        value, kind = getattr(config, f.name), _FIELD_TYPES[f.name]
        if isinstance(value, Enum) or (value is None and f.name in _OPTIONAL):
            continue
        if f.name in _AUTO_OK and value == AUTO:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, f.name, float(value))
            continue
        fits = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not fits:
            raise ConfigError(f"setting {f.name}: {value!r} is not {_EXPECTED.get(kind, 'text')}.")


def _check_ranges(config: TrainConfig) -> None:
    """Every number lies in its range (``_WHOLE``, ``_REAL``); one message names the range."""
    for name, (low, high) in _WHOLE.items():
        value = getattr(config, name)
        if name in _AUTO_OK and value == AUTO:
            continue
        if value is not None and not low <= value <= high:
            raise ConfigError(
                f"{_flag(name)} must be a whole number from {low} to {high}, got {value}."
            )
    for name, (low, high, low_ok, high_ok) in _REAL.items():
        value = getattr(config, name)
        if name == "lr" and value == AUTO:
            continue
        inside = (low <= value if low_ok else low < value) and (
            value <= high if high_ok else value < high
        )
        if not (math.isfinite(value) and inside):
            lower = f"at least {low:g}" if low_ok else f"greater than {low:g}"
            upper = "" if math.isinf(high) else (
                f" and at most {high:g}" if high_ok else f" and below {high:g}"
            )  # fmt: skip
            raise ConfigError(
                f"{_flag(name)} must be a finite number {lower}{upper}, got {value}."
            )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_config(path: str | Path, **overrides: Any) -> tuple[TrainConfig, dict[str, str]]:
    """Read a YAML config, apply ``overrides`` and return it with each setting's provenance.

    Provenance maps every field to ``"default"``, ``"file"`` or ``"cli"``.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return parse_config_text(text, str(path), **overrides)


def build_config(
    *, file_values: dict[str, Any] | None = None, cli_values: dict[str, Any] | None = None
) -> tuple[TrainConfig, dict[str, str]]:
    """Merge defaults < file values < CLI values into a TrainConfig and its provenance."""
    names = [f.name for f in fields(TrainConfig)]
    values: dict[str, Any] = {}
    origin = dict.fromkeys(names, "default")
    for label, source in (("file", file_values or {}), ("cli", cli_values or {})):
        for key, value in source.items():
            if not isinstance(key, str):
                raise ConfigError(f"setting names are words; {key!r} is not one.")
            key = current_name(key.replace("-", "_"))
            if key not in names:
                raise ConfigError(f"unknown setting {key!r}.{closest(key, names)}")
            values[key], origin[key] = _coerce(key, value), label
    return TrainConfig(**values), origin


_FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(TrainConfig)}
_FIELD_TYPES.update(image_size=int, weights=str, lr=float, hflip=bool, budget=str, devices=int,
                    num_workers=int)  # fmt: skip
_FIELD_TYPES.update(mlflow_uri=str, wandb_mode=str, cache_budget=str)
_AUTO_OK = ("lr", "devices", "num_workers")  # settings that also take the word "auto"
_OPTIONAL = ("image_size", "weights", "hflip", "budget", "mlflow_uri", "wandb_mode",
             "cache_budget")  # fmt: skip
_EXPECTED = {bool: "true or false", int: "a whole number", float: "a number"}


def _coerce(key: str, value: Any) -> Any:
    """Give a file or CLI value its setting's type (YAML reads ``1e-3`` as a string)."""
    kind = _FIELD_TYPES[key]
    if value is None or isinstance(value, Enum) or kind is type(None):
        return value
    if key in _AUTO_OK and isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if key == "hflip" and isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    if key == "tracker" and isinstance(value, (list, tuple)):
        return _tracker_list(value)
    try:
        if isinstance(value, bool) and kind is not bool:
            raise ValueError  # YAML reads `epochs: yes` as True, which is not 1 epoch
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
                return False
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value) if kind in (int, float, str) else value
    except (TypeError, ValueError, OverflowError):
        expected = _EXPECTED.get(kind, "text")
        raise ConfigError(f"setting {key}: {value!r} is not {expected}.") from None


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``10m``, ``2h``, ``1h30m`` or a plain ``45``.

    Raises:
        ConfigError: ``text`` is not a duration, or it is not positive.
    """
    import re

    spec = str(text).strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", spec)
    if not spec or parts is None or not any(parts.groups()):
        raise ConfigError(
            f"--budget {text!r} is not a duration; write it like 90s, 10m, 2h or 1h30m."
        )
    hours, minutes, seconds = (float(v) if v else 0.0 for v in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not math.isfinite(total) or total <= 0:
        raise ConfigError(f"--budget {text!r} must be a positive duration, e.g. 90s or 10m.")
    return total


def current_name(key: str) -> str:
    """The name a setting has now (settings renamed since a file was written are mapped)."""
    return _RENAMED.get(key, key)


def config_text(config: TrainConfig, origin: dict[str, str]) -> str:
    """The effective settings and where each came from, as the YAML a run folder keeps."""
    return yaml.safe_dump({"settings": config.to_dict(), "source": origin}, sort_keys=False)


def parse_config_text(text: str, name: str, **overrides: Any) -> tuple[TrainConfig, dict[str, str]]:
    """Settings from YAML text (``name`` is where it came from, for errors), then ``overrides``."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read config file {name}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {name} must hold a mapping of settings.")
    settings = raw.get("settings", raw)
    if not isinstance(settings, dict):
        raise ConfigError(
            f"config file {name}: 'settings' must hold a mapping (name: value), got {settings!r}."
        )
    return build_config(file_values=settings, cli_values=overrides)
