"""The CLI under hostile and careless input: crashes, modified user files, silent mislabels.

Usage: uv run python benchmarks/hostile_inputs.py [--keep DIR]

Builds a small workspace (a flat image folder, a split one, a user's text file and image, a tiny
timm model saved as a weight file), then runs `headstart` commands a careless or hostile user
would (bad settings on the command line and in YAML, outputs pointed at user files and into the
data, thin images, run folders and link loops inside the data) through the CLI's real entry point.
Every case has an expected outcome: exit 2 with one ``error:`` line, or success with the data's
own classes and class counts. Prints one row per case, then the totals: kinds tried, crashes
(exit 1 or a traceback), user files modified, silent mislabels (a model or split with other
classes or counts than the folders hold), and outcomes other than expected.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import make_image_folder  # noqa: E402
from tests.e2e_helpers import TINY_MODEL, tiny_weights  # noqa: E402


@dataclass
class Case:
    kind: str
    args: list[str]
    expect: str  # "error" (exit 2, one error line) or "ok"
    classes: tuple[str, ...] = ()  # for "ok" runs that train: the classes the model must have
    run: str = ""  # the run folder to check the classes of
    per_class: int = 0  # images per class the run's splits must hold (train + val + test)


def cli(args: list[str], cwd: Path | None = None) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, stdout + stderr)."""
    from headstart.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.chdir(old)
    return code, out.getvalue() + err.getvalue()


def digests(path: Path, *, skip: str = "/runs/") -> dict[str, str]:
    """sha256 of ``path`` or of every file under it (links not followed, run folders skipped)."""
    files = [path] if path.is_file() else sorted(path.rglob("*"))
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file() and not p.is_symlink() and skip not in str(p)
    }


def thin_png(path: Path, width: int, height: int) -> Path:
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


def workspace(tmp: Path) -> dict[str, Path]:
    """The user's files: two image folders, a text file, an image, weights."""
    flat = make_image_folder(tmp / "photos", ("cat", "dog"), n=6, size=(40, 32))
    split = make_image_folder(tmp / "split", ("cat", "dog"), n=6, layout="split", n_val=2)
    thin = make_image_folder(tmp / "thin", ("cat", "dog"), n=12)  # 2 bad of 26: under 10%
    thin_png(thin / "cat" / "wide.png", 20000, 1)
    thin_png(thin / "dog" / "tall.png", 1, 20000)
    loop = make_image_folder(tmp / "loop", ("cat", "dog"), n=6, layout="split", n_val=2)
    (loop / "train" / "cat" / "back").symlink_to(loop / "train")
    (loop / "train" / "cat" / "._hidden.png").write_bytes(b"macOS resource fork")
    notes = tmp / "notes.txt"
    notes.write_text("my notes\n")
    user_dir = tmp / "user-folder"
    user_dir.mkdir()
    (user_dir / "keep.txt").write_text("keep\n")
    blocker = tmp / "a-file"
    blocker.write_text("not a folder\n")
    return {"flat": flat, "split": split, "thin": thin, "loop": loop, "notes": notes,
            "user_dir": user_dir, "blocker": blocker, "weights": tiny_weights(tmp)}  # fmt: skip


def cases(w: dict[str, Path], tmp: Path) -> list[Case]:
    tiny = ["--model", TINY_MODEL, "--weights", str(w["weights"]), "--image-size", "32",
            "--strategy", "feature-extract", "--epochs", "2"]  # fmt: skip
    flat, split, runs = str(w["flat"]), str(w["split"]), tmp / "runs"
    yaml_cases = {"settings: 5": "yaml-settings-not-mapping", "num_workers: -1": "yaml-range",
                  "max_bad_fraction: 5": "yaml-fraction", "epochs: true": "yaml-bool-as-int",
                  "lr: .inf": "yaml-non-finite"}  # fmt: skip
    found = [
        Case("seed-negative", ["train", flat, *tiny, "--seed", "-1", "--out", str(runs / "a")],
             "error"),
        Case("seed-huge", ["train", flat, *tiny, "--seed", str(10**23), "--out", str(runs / "b")],
             "error"),
        Case("lr-nan", ["train", flat, *tiny, "--lr", "nan", "--out", str(runs / "c")], "error"),
        Case("lr-inf", ["train", flat, *tiny, "--lr", "inf", "--out", str(runs / "d")], "error"),
        Case("lr-diverges", ["train", flat, *tiny, "--lr", "1e30", "--out", str(runs / "e")],
             "error"),
        Case("negative-factor", ["train", flat, *tiny, "--backbone-lr-factor", "-1", "--out",
                                 str(runs / "f")], "error"),
        Case("image-size-huge", ["train", flat, *tiny, "--image-size", "100000", "--out",
                                 str(runs / "g")], "error"),
        Case("out-inside-flat-data", ["train", flat, *tiny, "--out", f"{flat}/run"], "error"),
        Case("out-unwritable", ["train", flat, *tiny, "--out", str(w["blocker"] / "run")],
             "error"),
        Case("run-beside-splits", ["train", split, *tiny, "--out", f"{split}/runs/one"], "ok",
             ("cat", "dog"), f"{split}/runs/one", 8),
        Case("run-folder-inside-data", ["train", split, *tiny, "--out", f"{split}/runs/two"],
             "ok", ("cat", "dog"), f"{split}/runs/two", 8),
        Case("thin-images-in-data", ["train", str(w["thin"]), *tiny, "--out", str(runs / "thin")],
             "ok", ("cat", "dog"), str(runs / "thin"), 12),
        Case("link-loop-and-hidden", ["train", str(w["loop"]), *tiny, "--out",
                                      str(runs / "loop")], "ok", ("cat", "dog"),
             str(runs / "loop"), 8),
        Case("check-out-onto-an-image", ["check", flat, "--out", f"{flat}/cat/cat_000.png"],
             "error"),
        Case("check-out-a-folder", ["check", flat, "--out", str(w["user_dir"])], "error"),
        Case("export-onto-a-text-file", ["export", str(runs / "thin"), "--out", str(w["notes"])],
             "error"),
        Case("export-to-a-folder", ["export", str(runs / "thin"), "--out", str(w["user_dir"])],
             "error"),
        Case("evaluate-onto-a-file", ["evaluate", str(runs / "thin"), flat, "--out",
                                      str(w["notes"])], "error"),
        Case("evaluate-into-the-data", ["evaluate", str(runs / "thin"), flat, "--out",
                                        f"{flat}/report"], "error"),
        Case("predict-thin-among-good", ["predict", str(runs / "thin"), str(w["thin"])], "ok"),
    ]  # fmt: skip
    for i, (text, kind) in enumerate(yaml_cases.items()):
        config = tmp / f"c{i}.yaml"
        config.write_text(text + "\n")
        found.append(Case(kind, ["train", flat, *tiny, "--config", str(config), "--out",
                                 str(runs / f"y{i}")], "error"))  # fmt: skip
    return found


def mislabelled(case: Case) -> bool:
    """Whether a successful training run has other classes than its data folders."""
    if not case.run:
        return False
    meta = json.loads((Path(case.run) / "model" / "headstart.json").read_text())
    splits = json.loads((Path(case.run) / "splits.json").read_text())
    counts = [0] * len(meta["classes"])
    for name in ("train", "val", "test"):
        for _, label in splits[name]:
            counts[label] += 1
    return tuple(meta["classes"]) != case.classes or any(n != case.per_class for n in counts)


def judge(case: Case, code: int, output: str) -> tuple[bool, bool]:
    """(crashed, as expected)."""
    crashed = code not in (0, 2) or "Traceback" in output or "unexpected" in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    if case.expect == "error":
        return crashed, code == 2 and len(errors) == 1
    return crashed, code == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="keep the workspace in this folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.environ.setdefault("HEADSTART_CACHE", str(tmp / "cache"))
    try:
        work = workspace(tmp)
        user_files = {k: v for k, v in work.items() if k != "weights"}
        before = {k: digests(v) for k, v in user_files.items()}
        crashes = modified = mislabels = unexpected = 0
        rows: list[str] = []

        def check(case: Case) -> None:
            nonlocal crashes, unexpected, mislabels
            code, output = cli(case.args)
            crashed, expected = judge(case, code, output)
            wrong = case.expect == "ok" and bool(case.run) and code == 0 and mislabelled(case)
            crashes += crashed
            unexpected += not expected
            mislabels += wrong
            last = output.strip().splitlines()[-1] if output.strip() else ""
            rows.append(f"| {case.kind} | exit {code} | {'ok' if expected else 'UNEXPECTED'} | "
                        f"{last[:110]} |")  # fmt: skip

        for case in cases(work, tmp):
            check(case)
        code, output = cli(["train", ".", "--model", TINY_MODEL, "--weights",
                            str(work["weights"]), "--image-size", "32", "--epochs", "2",
                            "--strategy", "feature-extract"], cwd=work["flat"])  # fmt: skip
        crashed, expected = judge(Case("cd-data-train-dot", [], "error"), code, output)
        crashes, unexpected = crashes + crashed, unexpected + (not expected)
        rows.append(f"| cd-data-train-dot | exit {code} | {'ok' if expected else 'UNEXPECTED'} |")
        for key, path in user_files.items():  # run folders beside train/ and val/ are ours
            now = digests(path)
            modified += sum(now.get(p) != d for p, d in before[key].items())
        print("| case | exit | outcome | last line |\n|---|---|---|---|")
        print("\n".join(rows))
        print(f"{len(rows)} kinds tried: crashes {crashes}, user files modified {modified}, "
              f"silent mislabels {mislabels}, unexpected outcomes {unexpected}")  # fmt: skip
    finally:
        if args.keep:
            shutil.copytree(tmp, args.keep, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
