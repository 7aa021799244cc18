"""``headstart train``: fine-tune a pretrained model on an image folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from headstart.cli.options import UnfreezeStages, WeightsFile, ZooModel, choices
from headstart.config import (
    ACCELERATORS,
    MONITORS,
    PRECISIONS,
    Augment,
    BnStats,
    ClassWeights,
    Distributed,
    Optimizer,
    Sampler,
    Schedule,
    Strategy,
    TrainConfig,
)
from headstart.training.callbacks import BatchEnd, Callback

if TYPE_CHECKING:
    from rich.progress import TaskID

    from headstart.pipeline import RunResult
    from headstart.training.strategies import Phase

_D = TrainConfig()


# long: typer reads the options from this signature; the body is a dozen lines
def train(
    ctx: typer.Context,
    data: Annotated[
        str | None,
        typer.Argument(
            help="Image folder (class sub-folders, or train/ val/ [test/]) or a built-in dataset "
            "name (cifar10). Not needed with --resume.",
            show_default=False,
        ),
    ] = None,
    model: ZooModel = _D.model,
    weights: WeightsFile = None,
    strategy: Annotated[Strategy, typer.Option("--strategy", "-s")] = _D.strategy,
    unfreeze_stages: UnfreezeStages = _D.unfreeze_stages,
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs",
            "-e",
            help="Epochs in all, every phase counted (two-phase: the head's, then the "
            "fine-tuning ones).",
        ),
    ] = _D.epochs,
    head_epochs: Annotated[
        int,
        typer.Option(
            help="With two-phase: how many of the --epochs train the head only; at least one "
            "is left to fine-tune everything (--epochs 1: the head only)."
        ),
    ] = _D.head_epochs,
    image_size: Annotated[
        int | None, typer.Option(help="Input size in pixels (default: the model's own).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = _D.batch_size,
    lr: Annotated[
        str,
        typer.Option(
            help="Learning rate of the head (two-phase: in the head phase; the fine-tuning phase "
            "runs at lr x --finetune-lr-factor), or auto (a learning-rate sweep on your data "
            "picks it)."
        ),
    ] = str(_D.lr),
    finetune_lr_factor: Annotated[
        float, typer.Option(help="Two-phase: the fine-tuning phase's head lr = lr x this factor.")
    ] = _D.finetune_lr_factor,
    backbone_lr_factor: Annotated[
        float, typer.Option(help="A phase's body lr = the phase's head lr x this factor.")
    ] = _D.backbone_lr_factor,
    layer_decay: Annotated[
        float,
        typer.Option(help="Each body stage below the last trains at this times the lr above it."),
    ] = _D.layer_decay,
    optimizer: Annotated[Optimizer, typer.Option()] = _D.optimizer,
    momentum: Annotated[
        float, typer.Option(help="With --optimizer sgd: Nesterov momentum (0: plain SGD).")
    ] = _D.momentum,
    weight_decay: Annotated[float, typer.Option()] = _D.weight_decay,
    label_smoothing: Annotated[float, typer.Option()] = _D.label_smoothing,
    warmup_epochs: Annotated[float, typer.Option()] = _D.warmup_epochs,
    patience: Annotated[
        int,
        typer.Option(
            help="Early stopping: end the last phase after this many epochs without a better "
            "--monitor (0: off, every epoch trains)."
        ),
    ] = _D.patience,
    monitor: Annotated[
        str,
        typer.Option(metavar=choices(MONITORS), help="What picks the best epoch and stops early."),
    ] = _D.monitor,
    augment: Annotated[
        Augment, typer.Option(help="Training augmentation preset (applied to the decoded images).")
    ] = _D.augment,
    hflip: Annotated[
        bool | None,
        typer.Option(
            "--hflip/--no-hflip",
            help="Random horizontal flips (wrong for text, digits, some medical images) "
            "[default: on].",
            show_default=False,
        ),
    ] = _D.hflip,
    random_erasing: Annotated[
        float, typer.Option(help="Probability of erasing a random rectangle of a training image.")
    ] = _D.random_erasing,
    mixup: Annotated[float, typer.Option(help="MixUp alpha (0: off).")] = _D.mixup,
    cutmix: Annotated[float, typer.Option(help="CutMix alpha (0: off).")] = _D.cutmix,
    ema: Annotated[
        bool,
        typer.Option(
            "--ema/--no-ema",
            help="Also keep an exponential moving average of the weights; it is validated every "
            "epoch and saved when it wins.",
        ),
    ] = _D.ema,
    ema_decay: Annotated[float, typer.Option(help="Decay of --ema per step.")] = _D.ema_decay,
    schedule: Annotated[
        Schedule, typer.Option(help="Learning-rate schedule of each phase, after the warm-up.")
    ] = _D.schedule,
    accumulate: Annotated[
        int, typer.Option(help="Accumulate gradients over this many batches per step.")
    ] = _D.accumulate,
    clip_grad: Annotated[
        float, typer.Option(help="Clip the gradient norm to this value (0: off).")
    ] = _D.clip_grad,
    class_weights: Annotated[
        ClassWeights, typer.Option(help="balanced: weigh the loss by inverse class counts.")
    ] = _D.class_weights,
    sampler: Annotated[
        Sampler, typer.Option(help="balanced: draw training batches with classes equally often.")
    ] = _D.sampler,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Time for the whole command, e.g. 90s, 10m, 2h: headstart plans image size, "
            "strategy, epochs and batch size to fit it (your explicit settings win).",
            show_default=False,
        ),
    ] = None,
    bn_stats: Annotated[
        BnStats,
        typer.Option(
            help="BatchNorm running statistics: keep the pretrained ones, or adapt those of "
            "trainable stages to your data."
        ),
    ] = _D.bn_stats,
    val_fraction: Annotated[float, typer.Option()] = _D.val_fraction,
    test_fraction: Annotated[float, typer.Option()] = _D.test_fraction,
    seed: Annotated[int, typer.Option()] = _D.seed,
    out: Annotated[str, typer.Option("--out", "-o", help="Run folder.")] = _D.out,
    num_workers: Annotated[
        str,
        typer.Option(
            help="Worker processes that decode training images: auto (none on a CPU, where the "
            "main process keeps up and a resume is bit-exact; up to 8 per GPU process), or a "
            "number (0: the main process)."
        ),
    ] = str(_D.num_workers),
    accelerator: Annotated[
        str,
        typer.Option(
            metavar=choices(ACCELERATORS),
            help="Device type, as Lightning Fabric names it (auto: CUDA, else MPS, else the "
            "CPU; gpu: CUDA or MPS; tpu needs torch_xla).",
        ),
    ] = _D.accelerator,
    precision: Annotated[
        str,
        typer.Option(
            metavar=choices(PRECISIONS),
            help="auto: a short timed trial picks float32 or bf16 per model and machine.",
        ),
    ] = _D.precision,
    devices: Annotated[
        str,
        typer.Option(
            help="Processes on this machine, one device each (auto: every GPU); more than one "
            "trains with DDP. Under torchrun or SLURM: the processes per node."
        ),
    ] = str(_D.devices),
    num_nodes: Annotated[
        int, typer.Option(help="Machines taking part (run under torchrun, SLURM or fabric run).")
    ] = _D.num_nodes,
    distributed: Annotated[
        Distributed,
        typer.Option(help="How several processes train: auto (DDP when there are several) or ddp."),
    ] = _D.distributed,
    max_bad_fraction: Annotated[
        float,
        typer.Option(
            help="Refuse to train when more than this fraction of images is bad."
        ),
    ] = _D.max_bad_fraction,
    tensorboard: Annotated[
        bool, typer.Option(help="Also log metrics as TensorBoard events in RUN/tensorboard.")
    ] = _D.tensorboard,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            help="Decode and resize each image once and train from the uint8 copy on disk; in "
            "phases that train the head only, also run the frozen body once per image and keep "
            "its features for later epochs and runs (the head then trains without augmentation).",
        ),
    ] = _D.cache,
    cache_budget: Annotated[
        str | None,
        typer.Option(
            help="Most disk the decoded images and features may take together, e.g. 10GiB, "
            "500MB, 0 (oldest entries go first; data larger than this is decoded as it is "
            "read) (default: HEADSTART_CACHE_BUDGET, else 10GiB).",
            show_default=False,
        ),
    ] = None,
    checkpoint_every_steps: Annotated[
        int, typer.Option(help="Also checkpoint every N steps within an epoch (0: off).")
    ] = _D.checkpoint_every_steps,
    tracker: Annotated[
        list[str] | None,
        typer.Option(
            help="Also log to a tracker: tensorboard, mlflow or wandb (repeat it, or a comma "
            "list); mlflow and wandb are extras (uv sync --extra mlflow).",
            show_default=False,
        ),
    ] = None,
    mlflow_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else the file store mlruns/ "
            "beside the run folder).",
            show_default=False,
        ),
    ] = None,
    mlflow_experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = (
        _D.mlflow_experiment
    ),
    wandb_project: Annotated[str, typer.Option(help="W&B project.")] = _D.wandb_project,
    wandb_mode: Annotated[
        str | None,
        typer.Option(
            help="W&B mode: online, or offline (no network; `wandb sync` later) (default: "
            "WANDB_MODE, else online).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file of settings; command-line options win.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the interrupted run in this run folder with its saved settings.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fine-tune a pretrained model on DATA and write a run folder.

    Example: headstart train photos/ --strategy partial --unfreeze-stages 2 --epochs 8

    Continue a stopped run: headstart train --resume runs/run
    """
    from headstart.config import build_config, load_config
    from headstart.errors import ConfigError
    from headstart.pipeline import train_run

    given = {
        name: value
        for name, value in ctx.params.items()
        if name not in ("config", "resume", "data") and _from_command_line(ctx, name)
    }
    if resume is not None:
        _resume(resume, given, data=data, config=config)
        return
    if data is not None:
        given["data"] = data
    if weights is not None:
        given["weights"] = str(weights.resolve())  # a resumed run may start elsewhere
    if config is not None:
        cfg, origin = load_config(config, **given)
    else:
        cfg, origin = build_config(cli_values=given)
    if not cfg.data:
        raise ConfigError("missing DATA: give an image folder (or `data:` in --config FILE).")
    _check_data(cfg.data)
    from headstart.started import AT

    result = run_with_progress(
        cfg, lambda callbacks: train_run(cfg, origin, callbacks=callbacks, started=AT)
    )
    print_summary(result)


def _resume(run_dir: Path, given: dict[str, Any], *, data: str | None, config: Path | None) -> None:
    """``--resume RUN_DIR``: continue that run; only a few operational options may change."""
    from headstart.config import RESUME_FREE, RESUME_INEXACT
    from headstart.errors import ConfigError
    from headstart.pipeline import resume_run
    from headstart.run_folder import RunFolder

    extra = [name for name in given if name not in RESUME_FREE + RESUME_INEXACT]
    if data is not None or config is not None or extra:
        names = ["DATA"] * (data is not None) + ["--config"] * (config is not None)
        names += ["--" + name.replace("_", "-") for name in extra]
        raise ConfigError(
            f"--resume continues {run_dir} with its saved settings; drop {', '.join(names)} "
            "(or start a new run with another --out)."
        )
    cfg, _ = RunFolder.open(run_dir).load_config(**given)
    print_summary(
        run_with_progress(cfg, lambda callbacks: resume_run(run_dir, given, callbacks=callbacks))
    )


def _check_data(data: str) -> None:
    """A missing DATA folder is one line before anything else is printed (cifar10 is built in)."""
    from headstart.data.class_folders import check_data_folder

    root = Path(data).expanduser()
    if data != "cifar10" or root.exists():
        check_data_folder(root.absolute())


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed option ``name`` (typer may vendor its own click, so compare names)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


class _Progress(Callback):
    """A progress bar per epoch (loss, images/s), one printed line per epoch, and the notes."""

    def __init__(self, total_epochs: int) -> None:
        from headstart.cli.console import PassBars, new_bar

        self.total_epochs = total_epochs
        self.bar = new_bar()
        self.passes = PassBars(self.bar)  # audit, decoding, features, validation, test
        self.task: TaskID | None = None

    def on_plan(self, phases: Sequence[Phase]) -> None:
        self.total_epochs = sum(p.epochs for p in phases)  # a --budget plan may have changed it

    def on_batch_end(self, batch: BatchEnd) -> None:
        if self.task is None:
            self.bar.start()  # only now: an error before the first step prints just its line
            self.task = self.bar.add_task("training", total=batch.num_batches, speed="")
        self.bar.update(
            self.task,
            completed=batch.batch,
            total=batch.num_batches,
            speed=f"loss {batch.loss:.3f}  {batch.images_per_s:.0f} img/s",
        )

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        from headstart.cli.console import epoch_line

        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.bar.console.print(epoch_line(row, self.total_epochs), markup=False)

    def on_note(self, message: str) -> None:
        from headstart.cli.console import err

        err.print(f"note: {message}")


def run_with_progress(cfg: TrainConfig, fit: Callable[[list[Callback]], RunResult]) -> RunResult:
    """Run ``fit(callbacks)`` with a progress bar (images/s) and one printed line per epoch."""
    from headstart.cli.console import out, warnings_as_lines
    from headstart.pipeline import NOTE_FLAG

    out.print(f"training {cfg.model} ({cfg.strategy.value}) on {cfg.data}")
    from headstart.progress import reporting

    progress = _Progress(cfg.epochs)
    try:
        with warnings_as_lines(NOTE_FLAG), reporting(progress.passes):
            return fit([progress])
    finally:
        if progress.bar.live.is_started:  # stopping an unstarted bar prints an empty line
            progress.bar.stop()


def print_summary(result: RunResult) -> None:
    """Print the best epoch, test metrics and where the run was written."""
    from headstart.cli.console import out

    best = result.best_metrics
    out.print(
        f"best epoch {result.best_epoch}: val acc {best.get('val_acc', float('nan')):.4f}, "
        f"val f1 {best.get('val_f1', float('nan')):.4f}"
    )
    if result.test_metrics:
        t = result.test_metrics
        out.print(
            f"test: acc {t['acc']:.4f}, macro-F1 {t['macro_f1']:.4f} on {t['num_images']} images"
        )
    out.print(f"run folder: {result.run_dir}  (model: {result.model_dir})")
