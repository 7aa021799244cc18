"""Settings: defaults, validation with fixes in the message, YAML types, provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from headstart.config import Strategy, TrainConfig, build_config, config_text, load_config
from headstart.errors import ConfigError


def test_defaults_are_the_documented_ones() -> None:
    config = TrainConfig()
    assert config.model == "bundled:efficientnet_lite0"
    assert config.strategy is Strategy.TWO_PHASE


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"strategy": "two_phase"}, "Did you mean: two-phase"),
        ({"epochs": 0}, "--epochs must be positive"),
        ({"epochs": 3, "head_epochs": 3}, "greater than --head-epochs"),
        ({"image_size": 4}, "at least 8"),
        ({"accelerator": "cuda0"}, "auto, cpu, cuda"),
        ({"precision": "bf16"}, "bf16-mixed"),
        ({"monitor": "acc"}, "val_acc"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "leave images to train on"),
        ({"epochs": "five"}, "setting epochs: 'five' is not a whole number"),
        ({"lrr": 0.1}, "Did you mean: lr"),
    ],
)
def test_bad_values_say_how_to_fix_them(values: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_config(cli_values=values)


def test_yaml_values_get_their_setting_type(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nepochs: '5'\ntensorboard: yes\nimage_size: 64.0\n")
    config, origin = load_config(path, batch_size=8)
    assert (config.lr, config.epochs, config.tensorboard, config.image_size) == (1e-3, 5, True, 64)
    assert origin["lr"] == "file" and origin["batch_size"] == "cli" and origin["seed"] == "default"


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    config, origin = build_config(cli_values={"strategy": "partial", "unfreeze_stages": 2})
    (tmp_path / "config.yaml").write_text(config_text(config, origin))
    doc = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert doc["settings"]["strategy"] == "partial" and doc["source"]["unfreeze_stages"] == "cli"
    again, _ = load_config(tmp_path / "config.yaml")
    assert again == config


def test_renamed_setting_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("settings:\n  feature_cache: false\n")
    config, origin = load_config(path)
    assert config.cache is False and origin["cache"] == "file"
