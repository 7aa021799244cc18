"""One meaning per flag (issue 15): help text shown whole, choices listed, shared defaults, the
epochs every user tries, and the options that existed only in YAML."""

from __future__ import annotations

import csv
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e_helpers import TINY_MODEL, tiny_weights
from tests.e2e_helpers import run_cli as run

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands() -> dict[tuple[str, ...], Any]:
    """Every command of the app by its words (``("models", "list")``), as click sees it."""
    import typer

    from headstart.cli.main import app

    found, stack = {}, [((), typer.main.get_command(app))]
    while stack:
        words, command = stack.pop()
        for name, sub in getattr(command, "commands", {}).items():
            stack.append(((*words, name), sub))
        if words:
            found[words] = command
    return found


def _squeezed(text: str) -> str:
    """``text`` without whitespace: help is wrapped at spaces and after hyphens."""
    return re.sub(r"\s+", "", text)


def test_every_help_keeps_its_bracketed_text() -> None:
    """Rich markup took ``[test/]`` or ``[default: RUN/eval]`` for tags and dropped them."""
    bracketed = 0
    for words, command in _commands().items():
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        snippets = [s for text in texts for s in re.findall(r"\[[^\[\]]+\]", text)]
        bracketed += len(snippets)
        code, out, err = run([*words, "--help"])
        assert code == 0, err
        for snippet in snippets:
            assert _squeezed(snippet) in _squeezed(out), (words, snippet)
    assert bracketed >= 4  # train/ val/ [test/], [default: on], RUN/eval, export's default


def test_help_lists_the_choices_config_accepts() -> None:
    from headstart.config import ACCELERATORS, MONITORS, PRECISIONS

    _, out, _ = run(["train", "--help"])
    for flag, values in (
        ("--accelerator", ACCELERATORS), ("--monitor", MONITORS), ("--precision", PRECISIONS),
    ):  # fmt: skip
        assert f"{flag} <{'|'.join(values)}>" in out, flag


def test_root_help_shows_each_command_line_whole() -> None:
    _, out, _ = run(["--help"])
    assert "prints the suggested head lr and writes lr_find.png." in " ".join(out.split())


def test_train_checks_data_before_it_says_training(tmp_path: Path) -> None:
    code, out, err = run(["train", str(tmp_path / "nonexistent")])
    assert code == 2 and out == "", out
    assert err.startswith("error: data folder") and "does not exist" in err


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("flags")
    data = make_image_folder(root / "data", ("cat", "dog"), n=6)
    args = ["--model", TINY_MODEL, "--weights", str(tiny_weights(root)), "--image-size", "32",
            "--batch-size", "8", "--accelerator", "cpu", "--precision", "32-true"]  # fmt: skip
    return data, args


@pytest.mark.parametrize(
    ("epochs", "phases", "split"),
    [
        (1, ["head"], "--epochs 1 trains the head only"),
        (2, ["head", "full"], "--epochs 2 leaves 1 of the 3 --head-epochs, so that 1 epoch"),
        (3, ["head", "head", "full"], "--epochs 3 leaves 2 of the 3 --head-epochs"),
    ],
)
def test_small_epochs_train_with_the_default_strategy(
    tmp_path: Path, tiny: tuple[Path, list[str]], epochs: int, phases: list[str], split: str
) -> None:
    data, args = tiny
    out_dir = tmp_path / "run"
    code, out, err = run(["train", str(data), *args, "--epochs", str(epochs), "--out",
                          str(out_dir)])  # fmt: skip
    assert code == 0, out + err
    assert [row["phase"] for row in _rows(out_dir)] == phases
    recipe = next(line for line in err.splitlines() if line.startswith("note: recipe: two-phase"))
    assert split in recipe


def test_patience_0_is_off_and_yaml_only_settings_are_flags(
    tmp_path: Path, tiny: tuple[Path, list[str]]
) -> None:
    """A learning rate too small to improve anything: patience 1 stops, patience 0 never does."""
    data, args = tiny
    common = [*args, "--strategy", "feature-extract", "--epochs", "4", "--lr", "1e-9"]
    code, _, err = run(["train", str(data), *common, "--patience", "1", "--out",
                        str(tmp_path / "stops")])  # fmt: skip
    assert code == 0, err
    assert len(_rows(tmp_path / "stops")) < 4
    flags = ["--patience", "0", "--layer-decay", "0.5", "--momentum", "0.8",
             "--finetune-lr-factor", "0.2"]  # fmt: skip
    code, _, err = run(["train", str(data), *common, *flags, "--out", str(tmp_path / "all")])
    assert code == 0, err
    assert len(_rows(tmp_path / "all")) == 4
    saved = yaml.safe_load((tmp_path / "all" / "config.yaml").read_text())
    for name, value in (("patience", 0), ("layer_decay", 0.5), ("momentum", 0.8),
                        ("finetune_lr_factor", 0.2)):  # fmt: skip
        assert (saved["settings"][name], saved["source"][name]) == (value, "cli"), name


def test_check_takes_num_workers_and_still_the_old_workers(
    tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "photos", ("cat", "dog"), n=3)
    for flag in ("--num-workers", "--workers"):
        code, out, err = run(["check", str(data), flag, "1"])
        assert code == 0 and "the data can be used" in out, err
    _, out, _ = run(["check", "--help"])
    assert "--num-workers" in out and "--workers" not in out


def _default(words: tuple[str, ...], name: str) -> Any:
    return next(p.default for p in _commands()[words].params if p.name == name)


def _library_default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def test_one_default_per_setting_in_the_commands_and_the_library() -> None:
    from headstart.data.images import DEFAULT_MAX_PIXELS
    from headstart.defaults import INFERENCE_BATCH_SIZE, MAX_PIXELS, TOPK, UPLOAD_MAX_PIXELS
    from headstart.inference import serve
    from headstart.inference.evaluate import evaluate_samples
    from headstart.inference.predict import predict_files
    from headstart.pipeline.embed import embed_folder

    assert _default(("predict",), "topk") == _library_default(predict_files, "topk") == TOPK
    for words, function in ((("predict",), predict_files), (("evaluate",), evaluate_samples),
                            (("embed",), embed_folder)):  # fmt: skip
        assert _default(words, "batch_size") == INFERENCE_BATCH_SIZE, words
        assert _library_default(function, "batch_size") == INFERENCE_BATCH_SIZE, function
    assert {_default((word,), "device") for word in ("predict", "evaluate", "embed", "serve")} == {
        "auto"
    }
    assert _default(("check",), "max_pixels") == DEFAULT_MAX_PIXELS == MAX_PIXELS
    assert _default(("serve",), "max_pixels") == serve.DEFAULT_MAX_PIXELS == UPLOAD_MAX_PIXELS


def test_the_server_lists_top_k_as_predict_does() -> None:
    pytest.importorskip("fastapi")
    from headstart.defaults import TOPK
    from headstart.inference.serve import create_app
    from tests.inference.helpers import tiny_loaded

    spec = create_app(tiny_loaded(("a", "b"))).openapi()
    (param,) = [p for p in spec["paths"]["/predict"]["post"]["parameters"] if p["name"] == "topk"]
    assert param["schema"]["default"] == TOPK


def test_readme_says_what_out_is_for_each_command() -> None:
    text = README.read_text(encoding="utf-8").split("What `--out` is", 1)[1].split("\n\n")[1]
    rows = dict(re.findall(r"^\| `([a-z -]+)` \| (.+?) \|$", text, flags=re.MULTILINE))
    with_out = {" ".join(words) for words, command in _commands().items()
                if any("--out" in getattr(p, "opts", ()) for p in command.params)}  # fmt: skip
    assert set(rows) == with_out and len(rows) >= 6
