"""Class imbalance: balanced loss weights and the class-balanced sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning_fabric import Fabric
from torch.utils.data import TensorDataset

from headstart.config import ClassWeights, Sampler
from headstart.errors import ConfigError
from headstart.training.batches import FeatureBatches, FeatureLoader, ImageBatches
from headstart.training.features import FeatureSet
from headstart.training.imbalance import balanced_class_weights, dataset_targets
from headstart.training.recipe import phase_recipe

from .helpers import engine_settings, tiny_model

NINE_TO_ONE = torch.tensor([0] * 90 + [1] * 10)


def _images(labels: torch.Tensor) -> TensorDataset:
    """Image ``i`` holds ``i`` in every pixel."""
    index = torch.arange(len(labels), dtype=torch.float32)
    return TensorDataset(index[:, None, None, None].expand(-1, 3, 4, 4).contiguous(), labels)


def _features(labels: torch.Tensor) -> FeatureSet:
    rows = np.arange(len(labels), dtype=np.float32)[:, None].repeat(4, axis=1)
    return FeatureSet(rows, labels.numpy().astype(np.int64), Path("."), False, 0.0)


def test_balanced_weights_are_n_over_k_times_count():
    weights = balanced_class_weights(NINE_TO_ONE, 3)  # class 2 has no images: weight 0
    torch.testing.assert_close(weights, torch.tensor([100 / (3 * 90), 100 / (3 * 10), 0.0]))
    torch.testing.assert_close(balanced_class_weights([0, 1, 1, 0], 2), torch.ones(2))
    with pytest.raises(ConfigError, match="2 classes"):
        balanced_class_weights([0, 2], 2)


def test_balanced_weights_change_the_loss_on_imbalanced_labels():
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = ImageBatches.create(
        fabric, _images(NINE_TO_ONE), _images(NINE_TO_ONE[:4]), batch_size=8, num_workers=0,
        seed=0,
    )  # fmt: skip
    model, _ = tiny_model()
    cpu = torch.device("cpu")
    recipes = {
        kind: phase_recipe(
            engine_settings(class_weights=kind), batches, model, num_classes=2, device=cpu
        )
        for kind in ClassWeights
    }
    logits = torch.tensor([[2.0, 0.0]] * 9 + [[0.0, 2.0]])  # right on class 0, right on class 1
    logits[0] = torch.tensor([0.0, 2.0])  # one mistake on class 0
    labels = torch.tensor([0] * 9 + [1])
    plain = float(recipes[ClassWeights.NONE].loss_fn(logits, labels))
    balanced = float(recipes[ClassWeights.BALANCED].loss_fn(logits, labels))
    assert balanced != pytest.approx(plain)
    expected = torch.nn.CrossEntropyLoss(weight=torch.tensor([100 / 180, 100 / 20]),
                                         label_smoothing=0.1)(logits, labels)  # fmt: skip
    assert balanced == pytest.approx(float(expected))


def _drawn(loader) -> torch.Tensor:
    return torch.cat([labels for _, labels in loader])


def test_the_balanced_sampler_draws_classes_about_equally():
    fabric = Fabric(accelerator="cpu", devices=1)
    dataset = _images(NINE_TO_ONE.repeat(10))  # 900 : 100
    batches = ImageBatches.create(
        fabric, dataset, _images(NINE_TO_ONE[:4]), batch_size=50, num_workers=0, seed=0,
        sampler=Sampler.BALANCED,
    )  # fmt: skip
    drawn = _drawn(batches.train)
    assert len(drawn) == 1000
    assert 0.44 < float(drawn.float().mean()) < 0.56  # class 1 about half of the draws
    shuffled = ImageBatches.create(fabric, dataset, dataset, batch_size=50, num_workers=0, seed=0)
    assert float(_drawn(shuffled.train).float().mean()) == pytest.approx(0.1)


def test_balanced_draws_replay_from_the_generator_state():
    """What a resume relies on: the same generator state draws the same epoch."""
    fabric = Fabric(accelerator="cpu", devices=1)
    dataset = _images(NINE_TO_ONE)
    for batches in (
        ImageBatches.create(fabric, dataset, dataset, batch_size=10, num_workers=0, seed=0,
                            sampler=Sampler.BALANCED),
        FeatureBatches.create(fabric, tiny_model()[0], tiny_model()[1], _features(NINE_TO_ONE),
                              _features(NINE_TO_ONE), batch_size=10, seed=0, sampler="balanced"),
    ):  # fmt: skip
        state = batches.generator.get_state()
        first = [inputs.clone() for inputs, _ in batches.train]
        second = [inputs.clone() for inputs, _ in batches.train]
        batches.generator.set_state(state)
        again = [inputs.clone() for inputs, _ in batches.train]
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_feature_loader_draws_classes_about_equally():
    generator = torch.Generator().manual_seed(0)
    features = _features(NINE_TO_ONE.repeat(10))
    loader = FeatureLoader(features, 50, device=torch.device("cpu"), generator=generator,
                           balanced=True)  # fmt: skip
    drawn = _drawn(loader)
    assert len(drawn) == 1000 and 0.44 < float(drawn.float().mean()) < 0.56
    plain = FeatureLoader(features, 50, device=torch.device("cpu"), generator=generator)
    assert float(_drawn(plain).float().mean()) == pytest.approx(0.1)


def test_a_dataset_without_labels_is_a_clear_error():
    with pytest.raises(ConfigError, match="targets"):
        dataset_targets(TensorDataset(torch.zeros(3, 2)))
    assert dataset_targets(_images(torch.tensor([1, 0]))).tolist() == [1, 0]
