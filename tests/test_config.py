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
        ({"epochs": 0}, "--epochs must be a whole number from 1"),
        ({"finetune_lr_factor": 0}, "--finetune-lr-factor must be a finite number greater than 0"),
        ({"image_size": 4}, "from 8 to 2048"),
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


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_every_small_epochs_value_is_a_two_phase_run(epochs: int) -> None:
    config, _ = build_config(cli_values={"epochs": epochs})  # head_epochs stays at 3
    assert (config.strategy, config.epochs, config.head_epochs) == (Strategy.TWO_PHASE, epochs, 3)


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


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"lr": float("inf")}, "--lr must be a finite number greater than 0"),
        ({"lr": float("nan")}, "--lr must be a finite number"),
        ({"lr": -1e-3}, "--lr must be a finite number greater than 0"),
        ({"backbone_lr_factor": -1}, "--backbone-lr-factor must be a finite number at least 0"),
        ({"layer_decay": 0}, "--layer-decay must be a finite number greater than 0"),
        ({"weight_decay": float("inf")}, "--weight-decay must be a finite number"),
        ({"warmup_epochs": float("nan")}, "--warmup-epochs must be a finite number"),
        ({"seed": -1}, "--seed must be a whole number from 0 to 4294967295"),
        ({"seed": 10**23}, "--seed must be a whole number from 0 to 4294967295"),
        ({"image_size": 100000}, "--image-size must be a whole number from 8 to 2048"),
        ({"num_workers": -1}, "--num-workers must be a whole number from 0"),
        ({"max_bad_fraction": 5}, "--max-bad-fraction must be a finite number at least 0"),
        ({"patience": -2}, "--patience must be a whole number from 0"),
        ({"epochs": True}, "setting epochs: True is not a whole number"),
        ({"epochs": "3"}, "setting epochs: '3' is not a whole number"),
        ({"cache": "yes"}, "setting cache: 'yes' is not true or false"),
    ],
)
def test_one_validation_for_python_yaml_and_cli(tmp_path: Path, values: dict, needle: str) -> None:
    """The same ranges hold whichever way a setting arrives."""
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        TrainConfig(**values)  # the Python API
    if not isinstance(next(iter(values.values())), str):  # YAML would read "3" as the number 3
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"settings": values}))
        with pytest.raises(ConfigError, match=needle.split(":")[0].replace("(", r"\(")):
            load_config(path)


@pytest.mark.parametrize("text", ["settings: 5\n", "settings: [1, 2]\n", "1: 2\n", "- a\n"])
def test_malformed_yaml_is_one_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="c.yaml|setting names"):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("", ""),
        ("MLflow, wandb", "mlflow,wandb"),
        (["wandb", "mlflow", "wandb"], "wandb,mlflow"),
        (("tensorboard",), "tensorboard"),
        ("mlflow,,", "mlflow"),
    ],
)
def test_trackers_become_one_comma_list(value, want: str) -> None:
    assert TrainConfig(tracker=value).tracker == want
    config, _ = build_config(cli_values={"tracker": value})
    assert config.tracker == want
    assert yaml.safe_load(config_text(config, {}))["settings"]["tracker"] == want


def test_tracker_settings_come_from_yaml_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tracker: [mlflow, wandb]\nwandb_mode: offline\nmlflow_uri: file:///x\n")
    config, origin = load_config(path, wandb_project="mine")
    got = (config.tracker, config.wandb_mode, config.mlflow_uri, config.wandb_project)
    assert got == ("mlflow,wandb", "offline", "file:///x", "mine")
    assert [origin[k] for k in ("tracker", "wandb_project", "mlflow_experiment")] == [
        "file", "cli", "default"
    ]
    assert TrainConfig().wandb_mode is None and TrainConfig().mlflow_uri is None
