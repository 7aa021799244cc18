import csv

import pytest
import torch
from lightning.fabric import Fabric

from headstart.config import TrainConfig
from headstart.training import build_loaders, load_checkpoint, run_training

from .helpers import bright_dark, tiny_model


def config(**changes):
    base = TrainConfig(
        epochs=3, head_epochs=1, lr=0.01, batch_size=8, warmup_epochs=0.5, accelerator="cpu"
    )
    return base.replace(**changes)


def train(cfg, tmp_path, arch="test_resnet", **kwargs):
    model, spec = tiny_model(arch)
    train_loader, val_loader = build_loaders(
        bright_dark(32), bright_dark(16, seed=1), batch_size=cfg.batch_size, seed=cfg.seed
    )
    fabric = Fabric(accelerator="cpu", devices=1)
    return run_training(
        cfg, model, spec, train_loader, val_loader, run_dir=tmp_path, fabric=fabric, **kwargs
    )


def test_feature_extract_learns_and_writes_run_folder(tmp_path):
    rows, batches = [], []
    result = train(
        config(strategy="feature-extract"), tmp_path, on_epoch=rows.append, on_batch=batches.append
    )
    assert len(result.history) == 3 and rows == result.history
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[-1]["train_acc"] >= 0.9
    assert result.best_metrics["val_acc"] >= 0.9
    assert len(batches) == 3 * 4 and batches[-1]["num_batches"] == 4
    with open(tmp_path / "metrics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3 and set(table[0]) >= {"epoch", "phase", "val_f1", "lr", "images_per_s"}
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["phase_index"] == 0 and len(last["history"]) == 3
    assert {"optimizer", "scheduler", "early_stopping", "best", "rng", "loader_generator"} <= set(
        last
    )
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == result.best_epoch
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, best["model"][name]), name
    assert not [p for p in tmp_path.rglob("*.tmp")]
    untrained = tiny_model()[0].state_dict()
    for name, tensor in result.model.state_dict().items():  # the frozen body did not move at all
        if not name.startswith("fc."):
            assert torch.equal(tensor, untrained[name]), name


def test_two_phase_switch_is_visible(tmp_path):
    result = train(config(strategy="two-phase"), tmp_path, arch="test_efficientnet")
    assert [r["phase"] for r in result.history] == ["head", "full", "full"]
    assert [p.name for p in result.phases] == ["head", "full"]
    assert result.history[1]["lr"] < result.history[0]["lr"]
    assert all(p.requires_grad for p in result.model.parameters())
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["phase_index"] == 1


def test_early_stopping_ends_the_run(tmp_path):
    result = train(config(strategy="full", epochs=4, lr=1e-9, patience=1), tmp_path)
    assert result.stopped_early and len(result.history) == 2
    assert result.best_epoch == 1


@pytest.mark.parametrize("strategy", ["partial"])
def test_same_seed_same_weights(tmp_path, strategy):
    cfg = config(strategy=strategy, epochs=2, unfreeze_stages=1)
    first = train(cfg, tmp_path / "a").model.state_dict()
    second = train(cfg, tmp_path / "b").model.state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    untrained = tiny_model()[0].state_dict()
    assert not torch.equal(first["fc.weight"], untrained["fc.weight"])
    assert not torch.equal(first["layer4.0.conv1.weight"], untrained["layer4.0.conv1.weight"])
    assert torch.equal(first["layer1.0.conv1.weight"], untrained["layer1.0.conv1.weight"])
    for buffer in ("running_mean", "running_var", "num_batches_tracked"):  # frozen BN stays put
        assert torch.equal(first[f"layer1.0.bn1.{buffer}"], untrained[f"layer1.0.bn1.{buffer}"])
        assert not torch.equal(first[f"layer4.0.bn1.{buffer}"], untrained[f"layer4.0.bn1.{buffer}"])
