"""``headstart lr-find``: sweep the learning rate on a data folder, suggest one, plot the curve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from headstart.cli.options import UnfreezeStages, WeightsFile, ZooModel
from headstart.config import Strategy, TrainConfig

if TYPE_CHECKING:
    from headstart.data.folders import DataSplits
    from headstart.training.lr_find import LrFind
    from headstart.training.strategies import Phase

_D = TrainConfig()
DEFAULT_OUT = Path("runs") / "lr_find"


def lr_find(
    data: Annotated[
        str,
        typer.Argument(
            help="Image folder (class sub-folders, or train/ val/ and maybe test/) or cifar10.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for lr_find.png: new, empty or an earlier lr-find folder, outside DATA "
            f"(default: {DEFAULT_OUT}).",
            show_default=False,
        ),
    ] = None,
    model: ZooModel = _D.model,
    weights: WeightsFile = None,
    strategy: Annotated[
        Strategy,
        typer.Option("--strategy", "-s", help="The sweep trains what its first phase trains."),
    ] = _D.strategy,
    unfreeze_stages: UnfreezeStages = _D.unfreeze_stages,
    image_size: Annotated[
        int | None, typer.Option(help="Input size in pixels (default: the model's own).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = _D.batch_size,
) -> None:
    """Find a learning rate for DATA: an exponential sweep (fastai's method) over up to 100
    training batches; prints the suggested head lr and writes lr_find.png.

    Example: headstart lr-find photos/ --strategy full, then headstart train photos/ --lr 0.003
    """
    from headstart.config import build_config
    from headstart.data.folders import load_splits
    from headstart.evaluation.report import REPORT_KIND, check_report_dir
    from headstart.files import mark_folder, refuse_inside
    from headstart.training.lr_find import LR_FIND_PNG

    given = {
        "data": data, "model": model, "strategy": strategy, "unfreeze_stages": unfreeze_stages,
        "image_size": image_size, "batch_size": batch_size,
        "weights": str(weights.resolve()) if weights is not None else None,
    }  # fmt: skip
    cfg, _ = build_config(cli_values={k: v for k, v in given.items() if v is not None})
    folder = out if out is not None else DEFAULT_OUT
    splits = load_splits(
        cfg.data, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    for root in splits.image_roots():
        refuse_inside(folder, root)
    check_report_dir(folder)  # both before any work
    result, phase = _sweep(cfg, splits)
    png = result.plot(mark_folder(folder, REPORT_KIND) / LR_FIND_PNG)
    _print_result(result, phase, cfg, png)


def _print_result(result: LrFind, phase: Phase, cfg: TrainConfig, png: Path) -> None:
    from headstart.cli.console import out

    how = "stopped when the loss diverged" if result.diverged else "no divergence"
    out.print(
        f"swept the {phase.name} phase of {cfg.strategy.value} ({cfg.model}): "
        f"{len(result.lrs)} steps, lr {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}, {how}",
        markup=False,
    )
    out.print(f"suggested learning rate: {result.suggestion:.2g}")
    out.print(f"curve written to {png}; train with: headstart train {cfg.data} --lr "
              f"{result.suggestion:.2g}", markup=False)  # fmt: skip


def _sweep(cfg: TrainConfig, splits: DataSplits) -> tuple[LrFind, Phase]:
    """Build the model and batches as training does, and sweep the strategy's first phase.

    The sweep trains on decoded, augmented images (``headstart train`` would train a head-only
    phase on cached features): only the batches the sweep takes are decoded.
    """
    from headstart.data.datasets import ImageDataset
    from headstart.data.transforms import build_eval_transform, build_train_transform
    from headstart.pipeline.phase_data import loader_workers
    from headstart.pipeline.recipe import engine_settings, plan_phases_for
    from headstart.pipeline.run import create_model, fabric_for
    from headstart.training.batches import ImageBatches
    from headstart.training.lr_find import find_lr

    fabric = fabric_for(cfg)
    model, spec = create_model(cfg, num_classes=len(splits.classes))
    phase = plan_phases_for(cfg, spec)[0]  # the sweep sets the lr itself
    pre = spec.preprocessing.with_size(cfg.image_size)
    augment = build_train_transform(
        pre, cfg.augment.value, hflip=cfg.hflip, random_erasing=cfg.random_erasing
    )
    batches = ImageBatches.create(
        fabric, ImageDataset(splits.train, augment),
        ImageDataset(splits.val, build_eval_transform(pre)), batch_size=cfg.batch_size,
        num_workers=loader_workers(cfg.num_workers, fabric), seed=cfg.seed,
    )  # fmt: skip
    optim = engine_settings(cfg, num_classes=len(splits.classes)).optim
    return find_lr(fabric, model, spec, phase, batches, optim, bn=cfg.bn_stats), phase
