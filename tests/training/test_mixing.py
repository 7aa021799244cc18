"""MixUp / CutMix: soft targets with label smoothing folded in, the soft loss, the accuracy."""

from __future__ import annotations

import pytest
import torch
from lightning_fabric import Fabric
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torchvision.transforms import v2

from headstart.speed.settings import SpeedSettings
from headstart.training.loop import StepOptions, train_epoch
from headstart.training.mixing import BatchMix, build_train_loss, create_batch_mix

from .helpers import bright_dark, run_engine, tiny_model


def _batch(n: int = 7, k: int = 4):
    torch.manual_seed(0)
    return torch.randn(n, 3, 8, 8), torch.arange(n) % k


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixed_targets_are_soft_and_sum_to_one(mixup, cutmix):
    images, labels = _batch()  # an odd batch: pairs wrap around
    mix = create_batch_mix(mixup, cutmix, num_classes=4, label_smoothing=0.1)
    assert isinstance(mix, BatchMix)
    kind = {(True, False): v2.MixUp, (False, True): v2.CutMix, (True, True): v2.RandomChoice}
    assert isinstance(mix.transform, kind[mixup > 0, cutmix > 0])
    mixed, targets = mix(images.clone(), labels)
    assert mixed.shape == images.shape and targets.shape == (7, 4)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(7))
    assert not torch.equal(mixed, images)
    assert (targets.max(dim=1).values < 1.0).all()  # not one-hot
    assert (targets.min(dim=1).values >= 0.1 / 4 - 1e-6).all()  # smoothing folded in


def test_label_smoothing_folded_in_equals_torch_smoothing_of_the_mix():
    images, labels = _batch()
    torch.manual_seed(3)
    plain = create_batch_mix(0.4, 0.0, num_classes=4, label_smoothing=0.0)
    _, unsmoothed = plain(images.clone(), labels)
    torch.manual_seed(3)
    smooth = create_batch_mix(0.4, 0.0, num_classes=4, label_smoothing=0.2)
    _, smoothed = smooth(images.clone(), labels)
    torch.testing.assert_close(smoothed, unsmoothed * 0.8 + 0.2 / 4)


def test_the_loss_is_the_soft_cross_entropy():
    images, labels = _batch()
    mix = create_batch_mix(0.4, 1.0, num_classes=4, label_smoothing=0.1)
    _, targets = mix(images, labels)
    logits = torch.randn(7, 4)
    loss = build_train_loss(label_smoothing=0.1, soft=True)
    torch.testing.assert_close(loss(logits, targets), SoftTargetCrossEntropy()(logits, targets))
    hard = build_train_loss(label_smoothing=0.1)
    torch.testing.assert_close(
        hard(logits, labels), nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)
    )


def test_features_mix_with_mixup_only():
    features, labels = torch.randn(5, 16), torch.tensor([0, 1, 2, 0, 1])
    assert create_batch_mix(0.0, 1.0, num_classes=3, label_smoothing=0.0, images=False) is None
    mix = create_batch_mix(0.4, 1.0, num_classes=3, label_smoothing=0.0, images=False)
    assert isinstance(mix.transform, v2.MixUp)
    torch.manual_seed(1)
    mixed, targets = mix(features.clone(), labels)
    assert mixed.shape == (5, 16)
    lam = float(targets[0, 0])  # sample 0 (class 0) mixed with sample 4 (class 1)
    torch.testing.assert_close(mixed[0], lam * features[0] + (1 - lam) * features[4])
    assert create_batch_mix(0.0, 0.0, num_classes=3, label_smoothing=0.1) is None


def test_training_accuracy_counts_the_unmixed_labels():
    """A model that always predicts the true class scores 1.0, whatever the mixed targets."""

    class Oracle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):  # x holds the label as its first feature, even after mixing
            return self.scale * torch.nn.functional.one_hot(x[:, 0].round().long(), 2).float()

    fabric = Fabric(accelerator="cpu", devices=1)
    model = Oracle()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    module, optimizer = fabric.setup(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    batches = [(labels[:, None].float().repeat(1, 3), labels)]

    def keep_inputs(inputs, labels):  # a mix that leaves inputs alone, targets soft
        return inputs, torch.full((len(labels), 2), 0.5)

    out = train_epoch(
        fabric, module, batches, optimizer, scheduler, build_train_loss(label_smoothing=0.0,
        soft=True), speed=SpeedSettings("cpu"), options=StepOptions(mix=keep_inputs),
    )  # fmt: skip
    assert out["acc"] == 1.0
    assert out["loss"] == pytest.approx(float(SoftTargetCrossEntropy()(
        torch.eye(2)[labels], torch.full((6, 2), 0.5))))  # fmt: skip


def test_engine_trains_with_mixup_and_cutmix(tmp_path):
    result = run_engine(
        tmp_path, tiny_model(), bright_dark(32), bright_dark(16, seed=1), strategy="full",
        epochs=2, mixup=0.4, cutmix=1.0,
    )  # fmt: skip
    assert len(result.history) == 2
    assert all(0.0 <= row["train_acc"] <= 1.0 for row in result.history)
    assert result.history[-1]["val_acc"] >= 0.9


@pytest.mark.parametrize(("mixup", "then"), [(0.0, "without mixing"), (0.4, "MixUp only")])
def test_a_feature_phase_with_cutmix_says_what_it_does_instead(mixup, then):
    import numpy as np

    from headstart.training.batches import FeatureBatches
    from headstart.training.features import FeatureSet
    from headstart.training.recipe import phase_recipe

    from .helpers import engine_settings

    model, spec = tiny_model()
    rows = FeatureSet(np.zeros((4, model.num_features), np.float32), np.array([0, 1, 0, 1]),
                      None, False, 0.0)  # fmt: skip
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = FeatureBatches.create(fabric, model, spec, rows, rows, batch_size=2, seed=0)
    recipe = phase_recipe(engine_settings(mixup=mixup, cutmix=1.0), batches,
                          batches.module(model, spec), num_classes=2,
                          device=torch.device("cpu"))  # fmt: skip
    assert len(recipe.notes) == 1 and then in recipe.notes[0] and "--no-cache" in recipe.notes[0]
    if mixup:
        assert isinstance(recipe.options.mix.transform, v2.MixUp)
    else:
        assert recipe.options.mix is None
