"""The learning-rate finder: the suggestion on synthetic curves; a sweep that leaves no trace."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from lightning_fabric import Fabric

import headstart.training.lr_find as lr_find_module
from headstart.config import BnStats
from headstart.errors import ConfigError, DataError
from headstart.files import folder_kind
from headstart.training.batches import ImageBatches
from headstart.training.lr_find import (
    LR_FIND_PNG,
    LrFind,
    find_lr,
    smooth_losses,
    suggest_lr,
    sweep_lrs,
)
from headstart.training.phase import OptimSettings
from headstart.training.strategies import Phase
from tests.training.helpers import bright_dark, tiny_model

LRS = sweep_lrs(1e-7, 10.0, 100)


def _loss_at(lr: float) -> float:
    """Flat until 1e-4, falling (linearly in log lr) to 0.4 at 1e-2, then blowing up."""
    x = math.log10(lr)
    if x < -4:
        return 2.3
    if x < -2:
        return 2.3 - (x + 4) / 2 * 1.9
    return 0.4 + (10 ** (x + 2) - 1) * 0.05


def test_sweep_lrs_are_log_spaced() -> None:
    assert LRS[0] == pytest.approx(1e-7) and LRS[-1] == pytest.approx(10.0)
    ratios = {round(b / a, 9) for a, b in zip(LRS, LRS[1:])}
    assert len(ratios) == 1


def test_smoothing_is_a_debiased_running_average() -> None:
    assert smooth_losses([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    smoothed = smooth_losses([1.0, 3.0], beta=0.5)
    assert smoothed == pytest.approx([1.0, (0.25 * 1 + 0.5 * 3) / 0.75])


def test_the_suggestion_falls_in_the_falling_part_of_a_clean_curve() -> None:
    losses = [_loss_at(lr) for lr in LRS]
    for curve in (losses, smooth_losses(losses)):
        suggestion = suggest_lr(LRS, curve)
        assert 1e-4 < suggestion < 1e-2
        assert suggestion < LRS[curve.index(min(curve))]


@pytest.mark.parametrize("noise", [0.02, 0.1])
def test_the_suggestion_falls_in_the_falling_part_of_a_noisy_curve(noise: float) -> None:
    for seed in range(10):
        rng = random.Random(seed)
        raw = [_loss_at(lr) + rng.gauss(0, noise) for lr in LRS]
        assert 1e-4 < suggest_lr(LRS, smooth_losses(raw)) < 1e-2, seed


def test_the_suggestion_of_short_and_bad_curves() -> None:
    assert suggest_lr([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0]) in (1e-3, 1e-2)
    assert suggest_lr([1e-3], [1.0]) == 1e-3
    with pytest.raises(ValueError, match="as many"):
        suggest_lr([1e-3, 1e-2], [1.0])


def _sweep_setup(n: int = 200, batch_size: int = 4):
    model, spec = tiny_model()
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = ImageBatches.create(
        fabric, bright_dark(n), bright_dark(8, seed=1), batch_size=batch_size, num_workers=0,
        seed=0,
    )  # fmt: skip
    return fabric, model, spec, batches


def test_a_sweep_stops_on_divergence_and_leaves_no_trace(tmp_path: Path) -> None:
    fabric, model, spec, batches = _sweep_setup()
    model.requires_grad_(True)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    batches.generator.manual_seed(5)
    generator, rng = batches.generator.get_state(), torch.get_rng_state()
    result = find_lr(
        fabric, model, spec, Phase("full", 1, None, 1e-3), batches, OptimSettings(),
        bn=BnStats.ADAPT, max_steps=12, start_lr=1e-2, end_lr=1e6,
    )  # fmt: skip
    assert result.diverged and 2 <= len(result.lrs) < 12
    assert len(result.losses) == len(result.raw_losses) == len(result.lrs)
    assert result.losses == pytest.approx(smooth_losses(result.raw_losses))
    assert result.suggestion in result.lrs
    after = model.state_dict()
    assert after.keys() == weights.keys()
    bn_buffers = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert bn_buffers, "the tiny model has BatchNorm layers"
    for name, value in weights.items():
        assert torch.equal(after[name], value), name
        assert after[name].dtype == value.dtype and after[name].stride() == value.stride(), name
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(batches.generator.get_state(), generator)
    png = result.plot(tmp_path)
    assert png == tmp_path / LR_FIND_PNG and png.read_bytes()[:4] == b"\x89PNG"
    assert folder_kind(tmp_path) is None  # the caller marks its own folders


def test_the_head_lr_follows_the_sweep_and_the_body_keeps_its_factors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fabric, model, spec, batches = _sweep_setup(n=40)
    seen: list[dict[str, float]] = []
    real = lr_find_module.train_epoch

    def spy(fabric, module, batches, optimizer, scheduler, loss_fn, *, on_step, **kwargs):  # noqa: ANN001, ANN202
        def hook(progress, loss, speed):  # noqa: ANN001, ANN202
            seen.append({g["name"]: g["lr"] for g in optimizer.param_groups})
            on_step(progress, loss, speed)

        return real(fabric, module, batches, optimizer, scheduler, loss_fn, on_step=hook, **kwargs)

    monkeypatch.setattr(lr_find_module, "train_epoch", spy)
    optim = OptimSettings(backbone_lr_factor=0.1, layer_decay=0.5)
    result = find_lr(
        fabric, model, spec, Phase("partial", 1, 1, 1e-3), batches, optim, bn=BnStats.ADAPT,
        max_steps=10, start_lr=1e-6, end_lr=1e-3,
    )  # fmt: skip
    assert not result.diverged and len(result.lrs) == 10  # one epoch: 40 / 4 batches
    last_stage = f"stage{spec.num_stages - 1}"
    for k, lrs in enumerate(seen[:-1]):  # after step k the groups are set for step k + 1
        assert lrs["head"] == pytest.approx(result.lrs[k + 1])
        assert lrs[last_stage] == pytest.approx(0.1 * result.lrs[k + 1])
    assert set(seen[0]) == {"head", "head/no_decay", last_stage, f"{last_stage}/no_decay"}


def test_a_sweep_is_capped_at_one_epoch_and_needs_two_batches() -> None:
    fabric, model, spec, batches = _sweep_setup(n=12)
    phase = Phase("head", 1, 0, 1e-3)
    result = find_lr(fabric, model, spec, phase, batches, OptimSettings(), bn=BnStats.ADAPT,
                     start_lr=1e-5, end_lr=1e-3)  # fmt: skip
    assert len(result.lrs) == 3 and result.lrs[-1] == pytest.approx(1e-3)
    fabric, model, spec, batches = _sweep_setup(n=4)
    with pytest.raises(DataError, match="--batch-size"):
        find_lr(fabric, model, spec, phase, batches, OptimSettings(), bn=BnStats.ADAPT)
    with pytest.raises(ConfigError, match="start lr < end lr"):
        find_lr(fabric, model, spec, phase, batches, OptimSettings(), bn=BnStats.ADAPT,
                start_lr=1.0, end_lr=0.1)  # fmt: skip


def test_a_head_phase_sweeps_cached_features() -> None:
    import numpy as np

    from headstart.training.batches import FeatureBatches
    from headstart.training.features import FeatureSet

    model, spec = tiny_model()
    rng = np.random.default_rng(0)
    labels = np.arange(64, dtype=np.int64) % 2
    rows = (rng.normal(size=(64, spec.num_features)) + labels[:, None] * 2).astype(np.float32)
    features = FeatureSet(rows, labels, Path("."), False, 0.0)
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = FeatureBatches.create(fabric, model, spec, features, features, batch_size=2, seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    result = find_lr(fabric, model, spec, Phase("head", 1, 0, 1e-3), batches, OptimSettings(),
                     bn=BnStats.PRETRAINED)  # fmt: skip
    assert 2 <= len(result.lrs) <= 32 and 1e-7 <= result.suggestion <= 10
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert all(p.requires_grad for p in model.parameters())


def test_lr_find_plot_to_a_file(tmp_path: Path) -> None:
    result = LrFind([1e-4, 1e-3, 1e-2], [1.0, 0.6, 3.0], 1e-3, raw_losses=[1.0, 0.5, 4.0])
    path = result.plot(tmp_path / "sweep.png")
    assert path == tmp_path / "sweep.png" and path.stat().st_size > 1000
