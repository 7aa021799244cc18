"""EMA: an average that differs from the live weights, validated every epoch, kept when it wins."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from headstart.training import validation
from headstart.training.checkpoint import load_checkpoint
from headstart.training.ema import EmaWeights, ema_wins

from .helpers import bright_dark, run_engine, tiny_model


def test_the_average_follows_timm_warmup_and_puts_live_weights_back():
    layer = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(layer.weight)
    ema = EmaWeights(layer, decay=0.999)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update()  # the first update takes the weights as they are
    with torch.no_grad():
        layer.weight.fill_(3.0)
    ema.update()  # step 2: decay 1 - 2 ** (-2/3)
    decay = 1 - 2 ** (-2 / 3)
    expected = decay * 1.0 + (1 - decay) * 3.0
    with ema.applied():
        torch.testing.assert_close(layer.weight, torch.full((1, 2), expected))
    assert torch.equal(layer.weight, torch.full((1, 2), 3.0))  # live weights back, exactly
    state = ema.state_dict()
    again = EmaWeights(layer, decay=0.999)
    again.load_state_dict(state)
    assert again.steps == 2
    assert torch.equal(again.average.module.weight, ema.average.module.weight)


def test_ema_wins_by_the_monitored_metric():
    live, ema = {"val_acc": 0.8, "val_loss": 0.5}, {"val_acc": 0.9, "val_loss": 0.6}
    assert ema_wins(live, ema, "val_acc") and not ema_wins(live, ema, "val_loss")
    assert not ema_wins(live, live, "val_acc")  # a tie keeps the live weights


def _train(tmp_path, **kwargs):
    settings = {"strategy": "feature-extract", "epochs": 2, "ema": True, "ema_decay": 0.99}
    return run_engine(
        tmp_path, tiny_model(), bright_dark(32), bright_dark(16, seed=1), **{**settings, **kwargs}
    )


def test_ema_weights_differ_from_the_live_ones(tmp_path):
    result = _train(tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["ema"]["steps"] == 2 * 4  # one update per optimizer step
    averaged, live = last["ema"]["weights"], last["model"]
    assert not torch.equal(averaged["fc.weight"], live["fc.weight"])
    assert torch.equal(averaged["conv1.0.weight"], live["conv1.0.weight"])  # frozen: the same
    assert all(isinstance(row["ema"], bool) for row in result.history)


def _val_loss(model, dataset) -> float:
    model.eval()
    images, labels = dataset.tensors
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(images), labels))


@pytest.mark.parametrize("wins", [True, False])
def test_the_winning_weights_are_kept_saved_and_loaded(tmp_path, monkeypatch, wins):
    monkeypatch.setattr(validation, "ema_wins", lambda live, ema, monitor: wins)
    result = _train(tmp_path, epochs=1)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    kept = last["ema"]["weights"] if wins else last["model"]
    assert not torch.equal(last["ema"]["weights"]["fc.weight"], last["model"]["fc.weight"])
    assert result.ema_used is wins and result.history[0]["ema"] is wins
    assert best["metrics"]["ema"] is wins
    for name, tensor in kept.items():
        assert torch.equal(best["model"][name], tensor), name
        assert torch.equal(result.model.state_dict()[name], tensor), name
    # the row's validation metrics are those of the weights it says
    assert result.history[0]["val_loss"] == pytest.approx(
        _val_loss(result.model, bright_dark(16, seed=1)), rel=1e-5
    )
