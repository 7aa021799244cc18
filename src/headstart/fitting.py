"""One training run from settings to a run folder: data, model, training, artifact, test metrics.

The CLI's ``train`` and ``demo`` commands and ``ImageClassifier.fit`` all call ``fit_run``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.config import Strategy, TrainConfig, dump_config
from headstart.errors import CheckpointError, ConfigError

__all__ = ["RunResult", "fit_run", "prepare_run_dir", "resume_run"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    model_dir: Path
    classes: tuple[str, ...]
    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    model: Any
    preprocessing: Any
    spec: Any
    notes: list[str] = field(default_factory=list)


class Notes(list[str]):
    """Notices worth showing the user: kept, logged, and passed to ``on_note`` as they come."""

    def __init__(self, on_note: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._on_note = on_note

    def add(self, message: str, *, level: int = logging.INFO) -> None:
        """Record ``message``, log it and hand it to the callback."""
        self.append(message)
        log.log(level, message)
        if self._on_note is not None:
            self._on_note(message)


def prepare_run_dir(out: str | Path, *, explicit: bool) -> tuple[Path, str | None]:
    """Pick the run folder: an existing default name gets a numeric suffix; an explicit one errors.

    Returns:
        The folder (created) and a note when the name was changed.
    """
    path = Path(out)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        path.mkdir(parents=True, exist_ok=True)
        return path, None
    if explicit:
        raise ConfigError(
            f"run folder {path} already exists and is not empty; choose another --out "
            "(headstart never overwrites a finished run)."
        )
    n = 2
    while Path(f"{path}-{n}").exists():
        n += 1
    new = Path(f"{path}-{n}")
    new.mkdir(parents=True)
    return new, f"{path} exists; writing this run to {new}"


def data_fingerprint(classes: tuple[str, ...], samples: list[Any]) -> str:
    """A short hash of class names and (file name, size, label) of every sample."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for s in sorted(samples, key=lambda s: s.path):
        try:
            size = os.stat(s.path).st_size
        except OSError:
            size = -1
        digest.update(f"{Path(s.path).name}\0{size}\0{s.label}\n".encode())
    return digest.hexdigest()[:16]


def fit_run(
    config: TrainConfig,
    origin: dict[str, str] | None = None,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[..., None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> RunResult:
    """Train a classifier as ``config`` says and write the run folder.

    Args:
        config: Effective settings.
        origin: Where each setting came from (for ``config.yaml``); all "default" if omitted.
        on_epoch: Called with each epoch's metrics row.
        on_batch: Passed to the loop for progress display.
        on_note: Called with each notice worth showing the user (renamed folder, made splits, ...).
    """
    from headstart.data.folders import load_splits, save_splits

    origin = origin or {name: "default" for name in config.to_dict()}
    notes = Notes(on_note)
    note = notes.add

    splits = load_splits(
        config.data,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    report = _audit(splits, config, note)
    splits = report.clean_splits()
    model, spec = _create_model(config, num_classes=len(splits.classes))
    run_dir, renamed = prepare_run_dir(config.out, explicit=origin.get("out") != "default")
    if renamed:
        note(renamed)
    if splits.origin.get("layout") in ("split", "cifar10") or splits.origin.get(
        "carved_from_train"
    ):
        note(
            f"validation split made from the training images (seed {config.seed}): "
            f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test; "
            "saved in splits.json"
        )
    save_splits(splits, run_dir / "splits.json")
    report.save(run_dir / "data_report.json")
    dump_config(config, origin, run_dir / "config.yaml")
    skipped = [(bad.path, bad.reason) for bad in report.bad]
    return _train_and_save(
        config, splits, model, spec, run_dir, notes,
        skipped=skipped, on_epoch=on_epoch, on_batch=on_batch,
    )  # fmt: skip


def resume_run(
    run_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[..., None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint, with its saved settings and splits.

    Args:
        run_dir: A run folder written by :func:`fit_run` (``config.yaml``, ``splits.json``,
            ``checkpoints/``).
        overrides: Settings that may change on resume (``num_workers``, ``accelerator``,
            ``checkpoint_every_steps``, ...); others make the checkpoint refuse to load.
        on_epoch: Called with each further epoch's metrics row.
        on_batch: Passed to the loop for progress display.
        on_note: Called with each notice worth showing the user.

    Raises:
        ConfigError: If ``run_dir`` is not a run folder.
        CheckpointError: If no usable checkpoint is there or it does not match the settings.
    """
    from headstart.config import load_config
    from headstart.data.folders import read_splits

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "splits.json").is_file():
        raise ConfigError(
            f"{run_dir} is not a headstart run folder (no config.yaml / splits.json); pass the "
            "folder that `headstart train` wrote, e.g. runs/run."
        )
    config, _ = load_config(run_dir / "config.yaml", **(overrides or {}))
    checkpoints = run_dir / "checkpoints"
    if not any((checkpoints / name).is_file() for name in ("last.pt", "last.prev.pt")):
        raise CheckpointError(
            f"{run_dir} has no checkpoint to resume from"
            + (
                " (feature-extract with the feature cache writes none: the features are cached, "
                "so run it again with another --out)"
                if config.strategy is Strategy.FEATURE_EXTRACT and config.feature_cache
                else " (two-phase writes its first one when the full phase starts; the head "
                "phase's features are cached, so running it again with another --out is quick)"
                if config.strategy is Strategy.TWO_PHASE and config.feature_cache
                else "; start the run again"
            )
            + "."
        )
    splits = read_splits(run_dir / "splits.json")  # already without the skipped files
    model, spec = _create_model(config, num_classes=len(splits.classes))
    notes = Notes(on_note)
    notes.add(f"resuming the run in {run_dir} from its last checkpoint")
    return _train_and_save(
        config, splits, model, spec, run_dir, notes, skipped=_saved_skipped(run_dir),
        on_epoch=on_epoch, on_batch=on_batch, resume_from=run_dir,
    )  # fmt: skip


def _saved_skipped(run_dir: Path) -> list[tuple[str, str]]:
    """The skipped files listed in ``run_dir/data_report.json`` (none if it is missing)."""
    try:
        bad = json.loads((run_dir / "data_report.json").read_text()).get("bad", [])
    except (OSError, ValueError):
        return []
    return [(str(b["path"]), str(b["reason"])) for b in bad]


def _audit(splits: Any, config: TrainConfig, note: Callable[[str], None]) -> Any:
    """Decode every image once (read-only); refuse unusable data, note skipped files."""
    from headstart.data.scan import audit_splits

    report = audit_splits(splits)
    report.raise_if_unusable(config.max_bad_fraction)
    if report.num_bad_samples:
        note(
            f"skipping {report.num_bad_samples} of {report.num_samples} images that cannot be "
            "used; they are listed in data_report.json"
        )
    for warning in report.warnings[:5]:
        note(warning)
    if len(report.warnings) > 5:
        note(f"{len(report.warnings) - 5} more data warning(s) in data_report.json")
    return report


def _create_model(config: TrainConfig, *, num_classes: int) -> tuple[Any, Any]:
    """Build the pretrained model with a new seeded head; check the strategy fits the model."""
    import torch

    from headstart.surgery import replace_head
    from headstart.training.strategies import plan_phases
    from headstart.zoo import create_backbone

    model, spec = create_backbone(config.model, pretrained=True, weights_file=config.weights)
    plan_phases(config, spec)  # fails early on --unfreeze-stages beyond the model's stages
    torch.manual_seed(config.seed)
    return replace_head(model, spec, num_classes), spec


def _train_and_save(
    config: TrainConfig,
    splits: Any,
    model: Any,
    spec: Any,
    run_dir: Path,
    notes: Notes,
    *,
    skipped: list[tuple[str, str]],
    on_epoch: Callable[[dict[str, Any]], None] | None,
    on_batch: Callable[..., None] | None,
    resume_from: Path | None = None,
) -> RunResult:
    from headstart.artifact import LoadedModel, save_model_dir

    classes = tuple(splits.classes)
    pre = spec.preprocessing.with_size(config.image_size)
    with ExitStack() as stack:
        from headstart.training.accel import keep_freed_memory

        stack.enter_context(keep_freed_memory())  # page faults cost 20-35% of a CPU step
        if config.tensorboard:
            from headstart.training.tensorboard import TensorBoardLog

            on_epoch = stack.enter_context(
                TensorBoardLog(run_dir / "tensorboard", then=on_epoch)
            ).log_epoch
        if config.strategy is Strategy.FEATURE_EXTRACT and config.feature_cache:
            result, datasets = _train_on_features(
                config, splits, model, spec, pre, run_dir, notes, on_epoch=on_epoch
            )
        else:
            result, datasets = _train_on_images(
                config, splits, model, spec, pre, run_dir, notes,
                on_epoch=on_epoch, on_batch=on_batch, resume_from=resume_from,
            )  # fmt: skip
            _note_speed(result.speed, config, notes)
    _report_run_failures(run_dir / "data_report.json", *datasets, notes=notes)
    model = result.model.cpu().eval()
    loaded = LoadedModel(model=model, classes=classes, preprocessing=pre, name=spec.name)
    test_metrics, evaluated = _test_metrics(loaded, splits, config)
    best = {k: v for k, v in result.best_metrics.items() if isinstance(v, (int, float, str))}
    model_dir = save_model_dir(
        run_dir / "model", model, spec=spec, classes=classes, preprocessing=pre,
        extra={
            "strategy": config.strategy.value,
            "bn_stats": config.bn_stats.value,
            "unfreeze_stages": (
                config.unfreeze_stages if config.strategy is Strategy.PARTIAL else None
            ),
            "best_epoch": result.best_epoch,
            "metrics": {"val": best, "test": test_metrics},
            "data_hash": data_fingerprint(classes, list(splits.train) + list(splits.val)),
            "images": {k: len(getattr(splits, k)) for k in ("train", "val", "test")},
        },
    )  # fmt: skip
    _write_run_report(run_dir, evaluated, splits, skipped)
    return RunResult(
        run_dir=run_dir, model_dir=model_dir, classes=classes, history=result.history,
        best_epoch=result.best_epoch, best_metrics=best, test_metrics=test_metrics,
        model=model, preprocessing=pre, spec=spec, notes=notes,
    )  # fmt: skip


def _train_on_images(
    config: TrainConfig,
    splits: Any,
    model: Any,
    spec: Any,
    pre: Any,
    run_dir: Path,
    notes: Notes,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    on_batch: Callable[..., None] | None,
    resume_from: Path | None,
) -> tuple[Any, list[Any]]:
    """The training loop over decoded, augmented images (every strategy).

    With the caches on, two-phase's head phase trains on cached features first (the frozen body
    runs once per image instead of once per epoch) and the loop continues with the full phase,
    from the head phase's best epoch.
    """
    from headstart.config import BnStats
    from headstart.data.datasets import ImageDataset
    from headstart.data.transforms import build_eval_transform, build_train_transform
    from headstart.surgery import BnPolicy
    from headstart.training.loop import build_loaders
    from headstart.training.runner import run_training

    if config.feature_cache:  # decode and resize each image once; epochs read uint8 from disk
        from headstart.data.cache import CachedImageDataset

        train_ds: Any = CachedImageDataset(splits.train, pre, config.augment.value)
        val_ds: Any = CachedImageDataset(splits.val, pre, None)
    else:
        train_ds = ImageDataset(splits.train, build_train_transform(pre, config.augment.value))
        val_ds = ImageDataset(splits.val, build_eval_transform(pre))
    prior, datasets = None, []
    head_first = config.strategy is Strategy.TWO_PHASE and config.head_epochs > 0
    if config.feature_cache and head_first and resume_from is None:
        prior, datasets = _train_on_features(
            config, splits, model, spec, pre, run_dir, notes, on_epoch=on_epoch
        )
    train_loader, val_loader = build_loaders(
        train_ds, val_ds, batch_size=config.batch_size, num_workers=config.num_workers,
        seed=config.seed,
    )  # fmt: skip
    bn = BnPolicy.EVAL if config.bn_stats is BnStats.PRETRAINED else BnPolicy.FROZEN
    result = run_training(
        config, model, spec, train_loader, val_loader,
        run_dir=run_dir, bn=bn, on_epoch=on_epoch, on_batch=on_batch,
        resume_from=resume_from, checkpoint_every_steps=config.checkpoint_every_steps,
        prior=prior,
    )  # fmt: skip
    return result, [*datasets, train_ds, val_ds]


def _train_on_features(
    config: TrainConfig,
    splits: Any,
    model: Any,
    spec: Any,
    pre: Any,
    run_dir: Path,
    notes: Notes,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> tuple[Any, list[Any]]:
    """A head-only phase on cached features: the frozen body runs once per image, ever.

    Trains all of feature-extract, or two-phase's head phase (``train_head_on_features`` runs
    the strategy's first phase).
    """
    from headstart.training.accel import describe
    from headstart.training.features import train_on_cached_features

    settings = _extraction_settings(model, spec, pre)
    result, feature_sets = train_on_cached_features(
        config, model, spec, splits.train, splits.val, pre,
        run_dir=run_dir, on_epoch=on_epoch, settings=settings,
    )  # fmt: skip
    reused = all(fs.from_cache for fs in feature_sets)
    how = describe(settings)
    message = (
        f"feature cache: {'reused' if reused else 'computed'} features of "
        f"{len(splits.train) + len(splits.val)} images ({feature_sets[0].folder.parent}; "
        f"body run in {how}, the fastest in a timed trial on this machine); the head "
        f"{'phase ' if config.strategy is Strategy.TWO_PHASE else ''}trains on un-augmented "
        "features (--no-cache trains with augmentation)"
    )
    notes.add(message)
    return result, feature_sets


def _note_speed(speed: dict[str, dict[str, Any]], config: TrainConfig, notes: Notes) -> None:
    """Tell the user how each phase ran (chosen by a timed trial under ``--precision auto``)."""
    from headstart.training.accel import SpeedSettings, describe

    if not speed:
        return
    how = ", ".join(f"{name} phase {describe(SpeedSettings(**s))}" for name, s in speed.items())
    if config.precision == "auto":
        notes.add(f"speed: {how} (the fastest in a timed trial on this machine; --precision "
                  "32-true turns autocast off)")  # fmt: skip
    else:
        notes.add(f"speed: {how}, precision {config.precision}")


def _extraction_settings(model: Any, spec: Any, pre: Any) -> Any:
    """The fastest way to run the frozen body here: a short timed trial, cached per host+model."""
    import torch

    from headstart.training.accel import tune_speed

    device = next(model.parameters()).device
    shape = (32, 3, pre.input_size, pre.input_size)
    sample = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device)
    return tune_speed(model, sample, key=spec.name, mode="infer")


def _report_run_failures(report_path: Path, *datasets: Any, notes: Notes) -> None:
    """Add files that broke during training (substituted by the datasets) to the data report."""
    failed = {path: reason for ds in datasets for path, reason in ds.failures.items()}
    if not failed:
        return
    notes.add(
        f"{len(failed)} image(s) broke during training and were replaced; see {report_path}",
        level=logging.WARNING,
    )
    from headstart.training.checkpoint import atomic_write_text

    doc = json.loads(report_path.read_text())
    doc["failed_during_run"] = [{"path": p, "reason": r} for p, r in sorted(failed.items())]
    atomic_write_text(report_path, json.dumps(doc, indent=1))


def _test_metrics(loaded: Any, splits: Any, config: TrainConfig) -> tuple[dict | None, Any]:
    """Evaluate on the test split, else on the validation split.

    Returns:
        The test metrics (None without a test split) and the evaluation the run's report shows.
    """
    from headstart.evaluation import evaluate_samples

    samples = splits.test or splits.val
    if not samples:
        return None, None
    result = evaluate_samples(loaded, samples, batch_size=config.batch_size)
    if not splits.test:
        return None, result
    keys = ("acc", "macro_f1", "loss", "top5", "num_images")
    return {k: result.metrics[k] for k in keys if k in result.metrics}, result


def _write_run_report(
    run_dir: Path, result: Any, splits: Any, skipped: list[tuple[str, str]]
) -> None:
    """Write the evaluation report (HTML, Markdown, CSV, pictures) into ``run_dir/report``."""
    if result is None:
        return
    import yaml

    from headstart.report import write_report

    split = "test" if splits.test else "validation (also used to pick the best epoch)"
    config_file = run_dir / "config.yaml"
    write_report(
        run_dir / "report", result, splits.classes,
        history_csv=run_dir / "metrics.csv",
        config=yaml.safe_load(config_file.read_text()) if config_file.is_file() else None,
        data_summary=splits,
        skipped=skipped,
        title=f"{run_dir.name}: {split} split",
    )  # fmt: skip
