"""End-to-end CLI tests on generated images with a tiny timm model (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e_helpers import TINY_MODEL, tiny_weights
from tests.e2e_helpers import run_cli as run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("e2e")
    data = make_image_folder(root / "data", ("cat", "dog", "fox"), n=8, layout="split", n_test=3)
    weights = tiny_weights(root)
    args = [
        "train", str(data), "--model", TINY_MODEL, "--weights", str(weights),
        "--strategy", "two-phase", "--epochs", "3", "--head-epochs", "1",
        "--image-size", "32", "--batch-size", "8", "--out", str(root / "run"), "--seed", "1",
    ]  # fmt: skip
    code, out, err = run(args)
    assert code == 0, out + err
    return root / "run", data


def test_train_writes_the_run_folder(trained_run: tuple[Path, Path]) -> None:
    run_dir, _ = trained_run
    assert (run_dir / "model" / "model.safetensors").is_file()
    meta = json.loads((run_dir / "model" / "headstart.json").read_text())
    assert meta["classes"] == ["cat", "dog", "fox"]
    assert meta["strategy"] == "two-phase"
    assert meta["preprocessing"]["input_size"] == 32
    assert {"torch", "timm", "headstart"} <= set(meta["versions"])
    assert meta["data_hash"]
    lines = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 3, "a header and one row per epoch"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["settings"]["epochs"] == 3
    assert config["source"]["epochs"] == "cli"
    assert config["source"]["lr"] == "default"
    assert (run_dir / "splits.json").is_file()
    for name in ("report.html", "report.md", "metrics.json", "curves.png", "misclassified.csv"):
        assert (run_dir / "report" / name).is_file(), name


def test_evaluate_prints_and_writes_metrics(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, data = trained_run
    code, out, err = run(["evaluate", str(run_dir), str(data), "--out", str(tmp_path)])
    assert code == 0, err
    assert "accuracy" in out and "macro-F1" in out and "fox" in out
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["metrics"]["num_images"] == 9  # test/ is preferred: 3 classes x 3 images
    assert set(doc["metrics"]["per_class"]) == {"cat", "dog", "fox"}
    assert doc["model"] == str(run_dir) and "ece" in doc["metrics"]
    for name in ("report.html", "per_class.csv", "curves.png", "top_losses.png"):
        assert (tmp_path / name).is_file(), name
    assert "report written to" in out


def test_predict_json_and_topk(trained_run: tuple[Path, Path]) -> None:
    run_dir, data = trained_run
    code, out, err = run(["predict", str(run_dir), str(data / "test" / "cat"), "--json", "-k", "2"])
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 3
    assert all(len(r["top"]) == 2 for r in rows)
    assert all(r["top"][0]["label"] in {"cat", "dog", "fox"} for r in rows)
    probs = [t["prob"] for t in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True)


def test_predict_table(trained_run: tuple[Path, Path]) -> None:
    run_dir, data = trained_run
    code, out, _ = run(["predict", str(run_dir / "model"), str(data / "val")])
    assert code == 0
    assert "probability" in out


def test_models_list_and_show() -> None:
    code, out, _ = run(["models", "list", "bundled:*"])
    assert code == 0 and "bundled:efficientnet_lite0" in out
    code, out, _ = run(["models", "show", "bundled:efficientnet_lite0"])
    assert code == 0 and "224 px" in out and "bicubic" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "{tmp}/missing"], "missing"),
        (["train", "{data}", "--strategy", "two_phase"], "two-phase"),
        (["train", "{data}", "--model", "efficientnet_lite9"], "efficientnet_lite"),
        (["train", "{one}"], "2 classes"),
        (["train", "{data}", "--strategy", "partial", "--unfreeze-stages", "99",
          "--model", "bundled:efficientnet_lite0"], "stages"),
        (["evaluate", "{tmp}", "{data}"], "not a headstart model"),
        (["predict", "{tmp}", "{data}"], "not a headstart model"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], needle: str, tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=4)
    one = image_folder_factory(tmp_path / "one", ("only",), n=4)
    filled = [a.format(tmp=tmp_path, data=data, one=one) for a in args] + [
        "--out",
        str(tmp_path / "run"),
    ] * (args[0] == "train")
    code, out, err = run(filled)
    assert code == 2, out + err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle.lower() in err.lower(), err
    assert "Traceback" not in err


def test_empty_class_folder_is_an_error(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=4)
    (data / "c").mkdir()
    code, _, err = run(["train", str(data), "--out", str(tmp_path / "run")])
    assert code == 2, err
    assert "c" in err and "no images" in err.lower(), err


def test_help_is_fast_and_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "headstart", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("train", "evaluate", "predict", "models", "demo"):
        assert command in out.stdout


def test_demo_runs_end_to_end_offline(tmp_path: Path) -> None:
    args = ["demo", "--epochs", "2", "--image-size", "32", "--out", str(tmp_path / "run"),
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    code, out, err = run(args)
    assert code == 0, out + err
    assert "test: acc" in out and "run folder" in out
    meta = json.loads((tmp_path / "run" / "model" / "headstart.json").read_text())
    assert meta["model"] == "bundled:efficientnet_lite0" and len(meta["classes"]) == 10
    assert meta["metrics"]["test"]["num_images"] == 200


def test_predict_with_a_zoo_model_name_uses_imagenet_classes(tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data as samples

    photo = tmp_path / "chelsea.png"
    Image.fromarray(samples.chelsea()).save(photo)
    code, out, err = run(["predict", "bundled:efficientnet_lite0", str(photo), "--json"])
    assert code == 0, err
    top = json.loads(out)[0]["top"]
    assert top[0]["label"] in {"tiger cat", "Egyptian cat", "tabby"}


def test_config_file_values_and_cli_override(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=6)
    weights = tiny_weights(tmp_path)
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump({"model": TINY_MODEL, "weights": str(weights), "epochs": 1,
                        "strategy": "feature-extract", "image_size": 32, "batch_size": 4,
                        "lr": 0.01})
    )  # fmt: skip
    code, out, err = run(
        ["train", str(data), "--config", str(config), "--lr", "0.02", "--out", str(tmp_path / "r")]
    )
    assert code == 0, out + err
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["settings"]["lr"] == 0.02 and saved["source"]["lr"] == "cli"
    assert saved["settings"]["epochs"] == 1 and saved["source"]["epochs"] == "file"
    assert saved["source"]["patience"] == "default"


def test_bad_files_are_skipped_and_listed_in_the_run_report(
    tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=6)
    bad = data / "a" / "notes.jpg"
    bad.write_text("not an image")
    args = ["train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(tmp_path)),
            "--strategy", "feature-extract", "--epochs", "1", "--image-size", "32",
            "--out", str(tmp_path / "run"), "--tensorboard"]  # fmt: skip
    code, out, err = run(args)
    assert code == 0, out + err
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert "skipping 1 of 13 images" in err
    report = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    assert [s["path"] for s in report["skipped"]] == [str(bad)]
    assert report["training"]["train"]["epoch"] == 1
    html = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "notes.jpg" in html and "Training" in html
    assert bad.read_text() == "not an image"  # the user's file is untouched


def test_feature_extract_reuses_cached_features_across_runs(
    tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=6, layout="split")
    weights = tiny_weights(tmp_path)
    base = ["train", str(data), "--model", TINY_MODEL, "--weights", str(weights),
            "--strategy", "feature-extract", "--epochs", "2", "--image-size", "32"]  # fmt: skip
    code, out, err = run([*base, "--out", str(tmp_path / "r1")])
    assert code == 0, out + err
    assert "feature cache: computed" in err
    code, out, err = run([*base, "--lr", "0.01", "--out", str(tmp_path / "r2")])
    assert code == 0, out + err
    assert "feature cache: reused" in err and "un-augmented" in err
    code, out, err = run([*base, "--no-cache", "--out", str(tmp_path / "r3")])
    assert code == 0, out + err
    assert "feature cache" not in err
    assert (tmp_path / "r2" / "model" / "model.safetensors").is_file()


def test_evaluating_the_training_folder_uses_its_held_out_split(
    tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=10)
    args = ["train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(tmp_path)),
            "--strategy", "feature-extract", "--epochs", "1", "--image-size", "32",
            "--test-fraction", "0.2", "--out", str(tmp_path / "run")]  # fmt: skip
    assert run(args)[0] == 0
    code, out, err = run(["evaluate", str(tmp_path / "run"), str(data), "--json",
                          "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 0, err
    assert "held-out test split" in err
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert json.loads(out)["num_images"] == len(splits["test"]) < 20


def test_predict_fails_when_no_image_can_be_read(tmp_path: Path, trained_run) -> None:
    run_dir, _ = trained_run
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    code, _, err = run(["predict", str(run_dir), str(bad)])
    assert code == 2 and "none of the 1 images" in err


def test_feature_extract_resumes_and_a_missing_checkpoint_is_a_clear_error(
    tmp_path: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=6)
    args = ["train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(tmp_path)),
            "--strategy", "feature-extract", "--epochs", "1", "--image-size", "32",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert run(args)[0] == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # feature phases checkpoint
    code, out, err = run(["train", "--resume", str(tmp_path / "run")])
    assert code == 0 and "run folder" in out, err
    for checkpoint in (tmp_path / "run" / "checkpoints").iterdir():  # killed before epoch 1 ended
        checkpoint.unlink()
    code, _, err = run(["train", "--resume", str(tmp_path / "run")])
    assert code == 2 and "no checkpoint" in err


def test_data_may_come_from_the_config_file(tmp_path: Path, image_folder_factory) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=6)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": str(data), "model": TINY_MODEL, "epochs": 1,
                                      "weights": str(tiny_weights(tmp_path)), "image_size": 32,
                                      "strategy": "feature-extract"}))  # fmt: skip
    code, out, err = run(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    assert code == 0, out + err


# ------------------------------------------------- issue 11: predict, evaluate, export, serve


def _one_line_exit_2(code: int, out: str, err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in err, out + err


def test_predict_skips_a_thin_image_and_keeps_the_others(trained_run, tmp_path: Path) -> None:
    from PIL import Image

    run_dir, data = trained_run
    folder = tmp_path / "new"
    folder.mkdir()
    for image in sorted((data / "test" / "cat").glob("*.png"))[:2]:
        (folder / image.name).write_bytes(image.read_bytes())
    Image.new("RGB", (20_000, 1)).save(folder / "thin.png")  # 144 bytes, 5 GB at 224 px
    code, out, err = run(["predict", str(run_dir), str(folder), "--json"])
    assert code == 0, err
    rows = {Path(r["path"]).name: r for r in json.loads(out)}
    assert "top" in rows["cat_000.png"] and "top" in rows["cat_001.png"]
    assert "thin.png" in rows["thin.png"]["error"] and "\n" not in rows["thin.png"]["error"]


def test_export_never_overwrites_a_users_file_or_takes_a_folder(
    trained_run, tmp_path: Path
) -> None:
    run_dir, _ = trained_run
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    code, out, err = run(["export", str(run_dir), "--out", str(notes)])
    _one_line_exit_2(code, out, err, "is not a headstart export")
    assert notes.read_text() == "my notes\n"
    _one_line_exit_2(*run(["export", str(run_dir), "--out", str(tmp_path)]), "is a folder")
    _one_line_exit_2(*run(["export", str(run_dir), "--out", str(notes / "m.onnx")]),
                     "choose a writable --out")  # fmt: skip
    _one_line_exit_2(*run(["export", str(run_dir), "--out", str(tmp_path / "m.onnx"),
                           "--opset", "99"]), "choose an --opset")  # fmt: skip
    for fmt in ("onnx", "torchscript"):  # an earlier export of ours is replaced
        code, out, err = run(["export", str(run_dir), "--out", str(tmp_path / "m.bin"), "-f", fmt])
        assert code == 0 and "wrote" in out, err


def test_evaluate_out_is_never_a_users_file_folder_or_inside_the_data(
    trained_run, tmp_path: Path
) -> None:
    run_dir, data = trained_run
    before = sorted(p for p in data.rglob("*"))
    notes = tmp_path / "notes.txt"
    notes.write_text("keep\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep\n")
    evaluate = ["evaluate", str(run_dir), str(data), "--out"]
    _one_line_exit_2(*run([*evaluate, str(notes)]), "is a file")
    _one_line_exit_2(*run([*evaluate, str(mine)]), "not a headstart report")
    _one_line_exit_2(*run([*evaluate, str(data / "reports")]), "inside the data folder")
    _one_line_exit_2(*run([*evaluate, str(notes / "sub")]), "choose a writable --out")
    assert notes.read_text() == "keep\n" and [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert sorted(p for p in data.rglob("*")) == before, "nothing is written inside the data"
    report = tmp_path / "report"
    for extra in ([], [], ["--no-report"]):  # its own report folder may be written again
        code, _, err = run([*evaluate, str(report), *extra])
        assert code == 0, err


def test_report_md_escapes_class_names(tmp_path: Path, image_folder_factory) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    data = image_folder_factory(tmp_path / "data", (hostile, "dog"), n=4)
    args = ["train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(tmp_path)),
            "--strategy", "feature-extract", "--epochs", "1", "--image-size", "32",
            "--out", str(tmp_path / "run")]  # fmt: skip
    code, out, err = run(args)
    assert code == 0, out + err
    markdown = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in markdown and "<img" not in markdown


def test_serve_port_in_use_is_one_line_and_token_turns_docs_off() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(["serve", "bundled:efficientnet_lite0", "--port", str(port)])
    _one_line_exit_2(code, out, err, f"port {port} is in use; choose another --port")
    from typer.main import get_command

    from headstart.cli.main import app

    serve = get_command(app).commands["serve"]  # type: ignore[attr-defined]
    token_help = next(p.help for p in serve.params if p.name == "token")
    assert "/docs, /redoc and /openapi.json are then turned off" in token_help
