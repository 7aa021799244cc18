"""Feature cache: exact head input, keys, reuse without running the body, head training."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning_fabric import Fabric
from torch import nn

from headstart.data.folders import Sample
from headstart.errors import ConfigError
from headstart.preprocessing import PreprocessSpec
from headstart.run_folder import RunFolder
from headstart.training.batches import FeatureBatches
from headstart.training.engine import train_phases
from headstart.training.features import (
    extract_features,
    feature_key,
    head_dropout,
    headless,
    weights_fingerprint,
)
from headstart.training.strategies import Phase
from tests.conftest import write_image
from tests.training.helpers import engine_settings, tiny_model

PRE = PreprocessSpec(input_size=32)


@pytest.fixture
def samples(tmp_path: Path) -> list[Sample]:
    colours = ((20, 20, 20), (230, 230, 230))
    return [
        Sample(str(write_image(tmp_path / "img" / f"{i}.png", colours[i % 2], (36, 36), i)), i % 2)
        for i in range(12)
    ]


def test_headless_gives_the_head_input() -> None:
    model, spec = tiny_model()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        with headless(model, spec) as body:
            feats = body(x)
        logits = model(x)
        head = model.get_submodule(spec.classifier)
        assert torch.allclose(head(feats), logits, atol=1e-6)
    assert isinstance(head, torch.nn.Linear)  # restored


def test_cached_equals_uncached_and_body_runs_once(samples, tmp_path: Path) -> None:
    model, spec = tiny_model()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    first = extract_features(model, spec, samples, PRE, batch_size=5, root=tmp_path / "f")
    n_calls = len(calls)
    second = extract_features(model, spec, samples, PRE, batch_size=5, root=tmp_path / "f")
    assert n_calls == 3 and len(calls) == n_calls  # 12 images / 5 per batch; none the 2nd time
    assert not first.from_cache and second.from_cache
    assert torch.allclose(torch.tensor(first.features[:]), torch.tensor(second.features[:]))
    model.eval()
    x = torch.stack([_eval_tensor(s.path) for s in samples[:2]])
    with torch.inference_mode(), headless(model, spec) as body:
        direct = body(x)
    assert torch.allclose(direct, torch.from_numpy(first.features[:2].copy()), atol=1e-5)


def _eval_tensor(path: str) -> torch.Tensor:
    from headstart.data.images import image_to_tensor

    return image_to_tensor(path, PRE)


def test_key_changes_with_inputs(samples) -> None:
    model, spec = tiny_model()
    fp = weights_fingerprint(model, spec)
    base = feature_key(spec, fp, PRE, samples)
    assert feature_key(spec, fp, PRE.with_size(40), samples) != base
    assert feature_key(spec, fp, PRE, samples, dtype="float16") != base
    assert feature_key(spec, fp, PRE, samples[:-1]) != base
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert weights_fingerprint(model, spec) != fp
    head = model.get_submodule(spec.classifier)
    with torch.no_grad():
        head.weight.add_(1.0)  # the head is not part of the body's fingerprint
    assert weights_fingerprint(model, spec) == weights_fingerprint(model, spec)
    write_image(Path(samples[0].path), (1, 2, 3), (37, 36), 5)
    assert feature_key(spec, fp, PRE, samples) != base


def test_budget_evicts_old_entries(samples, tmp_path: Path) -> None:
    model, spec = tiny_model()
    a = extract_features(model, spec, samples[:6], PRE, root=tmp_path / "f")
    b = extract_features(model, spec, samples[6:], PRE, root=tmp_path / "f", budget_bytes=1)
    assert not a.folder.exists() and b.folder.exists()


def _train_head(model, spec, train, val, folder: Path):
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = FeatureBatches.create(fabric, model, spec, train, val, batch_size=4, seed=0)
    return train_phases(
        fabric, model, spec, [Phase("head", 3, 0, 1e-3)], lambda phase: batches,
        engine_settings(), folder=RunFolder(folder), run_config={},
    )  # fmt: skip


def test_head_training_same_for_cached_and_fresh(samples, tmp_path: Path) -> None:
    heads, rows = [], []
    for run in range(2):  # run 0 extracts, run 1 reads the cache
        model, spec = tiny_model(seed=1)
        tr = extract_features(model, spec, samples[:8], PRE, root=tmp_path / "f")
        va = extract_features(model, spec, samples[8:], PRE, root=tmp_path / "f")
        assert tr.from_cache == bool(run)
        result = _train_head(model, spec, tr, va, tmp_path / f"run{run}")
        heads.append(model.get_submodule(spec.classifier).state_dict())
        rows.append(result.history)
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert [r["val_loss"] for r in rows[0]] == [r["val_loss"] for r in rows[1]]
    with open(tmp_path / "run0" / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 and table[0]["phase"] == "head" and float(table[0]["images_per_s"]) > 0


def test_the_head_on_features_trains_like_the_head_in_the_model(samples, tmp_path: Path) -> None:
    """Without dropout, a head step on cached features is the model's own head step."""
    model, spec = tiny_model(seed=1)
    feats = extract_features(model, spec, samples, PRE, root=tmp_path / "f")
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = FeatureBatches.create(fabric, model, spec, feats, feats, batch_size=4, seed=0)
    module = batches.module(model, spec)
    model.eval()
    x = torch.stack([_eval_tensor(s.path) for s in samples[:4]])
    with torch.no_grad():
        direct = model(x)
        via_features = module.eval()(torch.from_numpy(feats.features[:4].copy()))
    assert torch.allclose(direct, via_features, atol=1e-5)
    assert module.head is model.get_submodule(spec.classifier)  # the same parameters train


def test_head_dropout_reads_timm_drop_rate() -> None:
    model, spec = tiny_model()
    model.drop_rate = 0.25
    assert head_dropout(model, spec) == 0.25


def test_a_classifier_that_is_not_linear_is_refused(samples, tmp_path: Path) -> None:
    model, spec = tiny_model()
    feats = extract_features(model, spec, samples, PRE, root=tmp_path / "f")
    batches = FeatureBatches.create(
        Fabric(accelerator="cpu", devices=1), model, spec, feats, feats, batch_size=4, seed=0
    )
    model.fc = nn.Sequential(nn.Linear(spec.num_features, 2))
    with pytest.raises(ConfigError, match="--no-cache"):
        batches.module(model, spec)
