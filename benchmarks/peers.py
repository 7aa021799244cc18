"""headstart against its peers' default recipes (fastai, timm's train.py), same data, weights, size.

    uv run python benchmarks/make_fmnist_folders.py /tmp/hs_bench/fmnist_1k_100 \
        --train 1000 --val 1000
    uv run python benchmarks/peers.py --setup
    uv run python benchmarks/peers.py /tmp/hs_bench/fmnist_1k_100 \
        --epochs 6 --head-epochs 3 --image-size 96

Every tool starts from the same ImageNet weights: the bundled EfficientNet-Lite0 file, mapped once
onto timm's ``tf_efficientnet_lite0`` names by headstart's own loader (``--setup`` checks that timm,
loading the mapped file the way train.py and fastai do, gets every tensor of headstart's model).

- **headstart**: ``headstart train DATA --epochs E --head-epochs H --image-size S --seed N`` in a
  subprocess with a fresh ``HEADSTART_CACHE`` (everything else at its defaults).
- **fastai**: its default recipe, in a virtual environment of its own (``--setup`` installs fastai
  from PyPI there; the project's torch, torchvision and timm are reused through a ``.pth`` file and
  kept out of uv's resolution): ``ImageDataLoaders.from_folder(DATA, train="train",
  valid="val", item_tfms=Resize(S), batch_tfms=aug_transforms())``, ``vision_learner(dls,
  "tf_efficientnet_lite0", metrics=accuracy)`` with the weights as timm's pretrained file,
  ``learn.fine_tune(E - H, freeze_epochs=H)``; fastai keeps the last epoch's weights, so its final
  accuracy is reported.
- **timm**: the repository's own ``train.py`` (a snapshot, cloned by ``--setup`` from
  ``--timm-repo``) run with the project's timm on ``DATA/train`` and ``DATA/val``: ``--pretrained
  --pretrained-path`` the weights, ``--num-classes`` of the data, ``--img-size S --epochs E``, and
  its recipe flags passed explicitly at the values ``--setup`` read from train.py's own parser
  (SGD momentum 0.9, Nesterov as timm's ``sgd`` is; lr 0.1 x batch/256; cosine stepped per epoch
  with 5 warm-up epochs from 1e-5; label smoothing 0.1; RandomResizedCrop 0.08-1 + flip 0.5, colour
  jitter 0.4; batch 128; weight decay 2e-5; no EMA, mixup or cutmix); best top-1 over the epochs
  (train.py keeps the best checkpoint).

Wall time is the whole subprocess of each tool (start-up, data, training, validation); the one-time
setup is not in it. Each run writes its logs and ``results.json`` under ``--work``/runs/.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

TOOLS = ("headstart", "fastai", "timm")
TIMM_ARCH = "tf_efficientnet_lite0"
BUNDLED = "bundled:efficientnet_lite0"
WORK = Path("/tmp/hs_peers")
TIMM_MIRROR = Path("/work/.mirror/huggingface+pytorch-image-models/repo")

TIMM_RECIPE: dict[str, Any] = {
    "opt": "sgd", "momentum": 0.9, "weight_decay": 2e-5, "lr": None, "lr_base": 0.1,
    "lr_base_size": 256, "lr_base_scale": "", "sched": "cosine", "sched_on_updates": False,
    "warmup_epochs": 5, "warmup_lr": 1e-5, "min_lr": 0, "smoothing": 0.1,
    "scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3], "hflip": 0.5, "vflip": 0.0,
    "color_jitter": 0.4, "train_interpolation": "random", "aa": None, "reprob": 0.0,
    "mixup": 0.0, "cutmix": 0.0, "model_ema": False, "batch_size": 128, "drop": 0.0,
    "drop_path": None, "workers": 4, "amp": False, "channels_last": False,
}  # fmt: skip
"""train.py's defaults this benchmark relies on; ``--setup`` checks each against its parser."""

TIMM_FLAGS = (
    "--opt", "sgd", "--momentum", "0.9", "--weight-decay", "2e-5", "--lr-base", "0.1",
    "--lr-base-size", "256", "--sched", "cosine", "--warmup-lr", "1e-5", "--smoothing", "0.1",
    "--scale", "0.08", "1.0", "--hflip", "0.5", "--color-jitter", "0.4", "--mixup", "0",
    "--cutmix", "0",
)  # fmt: skip
"""The recipe, spelled out on the command line (the same values as train.py's defaults)."""


# ----------------------------------------------------------------------------------- setup


def run_setup(work: Path, *, timm_repo: Path, fastai_req: str) -> dict[str, Any]:
    """One-time preparation (not timed): mapped weights, fastai's venv, timm's train.py."""
    work.mkdir(parents=True, exist_ok=True)
    info = {"weights": convert_weights(work / "weights" / f"{TIMM_ARCH}.bundled.pth")}
    info["timm"] = prepare_timm(timm_repo, work / "timm-src")
    info["fastai"] = prepare_fastai(work / "fastai-venv", fastai_req)
    (work / "setup.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"setup written to {work / 'setup.json'}")
    return info


def convert_weights(dest: Path) -> dict[str, Any]:
    """Save the bundled weights under timm's names; check timm's file loading gets all of them."""
    import timm
    import torch

    from headstart.zoo import create_backbone
    from headstart.zoo.bundled import bundled_weights_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    model, _ = create_backbone(BUNDLED, pretrained=True)
    reference = model.state_dict()
    torch.save(reference, dest)
    # exactly what train.py's --pretrained --pretrained-path does (fastai: the same, num_classes=0)
    overlay = {"file": str(dest), "num_classes": -1}
    loaded = timm.create_model(TIMM_ARCH, pretrained=True, num_classes=10,
                               pretrained_cfg_overlay=overlay).state_dict()  # fmt: skip
    body = [k for k in reference if not k.startswith("classifier.")]
    differ = [k for k in body if not torch.equal(reference[k], loaded[k])]
    if differ:
        raise SystemExit(f"timm did not load {len(differ)} tensors of {dest}: {differ[:5]}")
    source = bundled_weights_path(BUNDLED.partition(":")[2])
    print(f"weights: {source} -> {dest} ({len(body)} body tensors, timm loads all of them)")
    return {"source": str(source), "source_sha256": _sha256(source), "file": str(dest),
            "body_tensors_checked": len(body)}  # fmt: skip


def prepare_timm(repo: Path, dest: Path) -> dict[str, Any]:
    """Clone the timm snapshot (for train.py) and check its defaults are the recipe above."""
    if not (repo / "HEAD").exists() and not (repo / ".git").exists():
        raise SystemExit(
            f"no timm repository at {repo}: fetch github:huggingface/pytorch-image-models (a git "
            "snapshot) and pass its path as --timm-repo"
        )
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "clone", "--quiet", str(repo), str(dest)], check=True)
    commit = _output(["git", "-C", str(dest), "rev-parse", "HEAD"]).strip()
    defaults = timm_defaults(dest / "train.py")
    wrong = {k: (defaults.get(k), v) for k, v in TIMM_RECIPE.items() if defaults.get(k) != v}
    if wrong:
        raise SystemExit(f"train.py's defaults are not the recipe (name: (train.py, expected)): "
                         f"{wrong}")  # fmt: skip
    print(f"timm: train.py of {commit[:12]} in {dest}; its defaults match the recipe")
    return {"train_py": str(dest / "train.py"), "commit": commit, "defaults": defaults}


def timm_defaults(train_py: Path) -> dict[str, Any]:
    """The defaults of train.py's own argument parser (the script is imported, not run)."""
    spec = importlib.util.spec_from_file_location("timm_train_script", train_py)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = vars(module.parser.parse_args([]))
    return {k: args[k] for k in TIMM_RECIPE}


def prepare_fastai(venv: Path, requirement: str) -> dict[str, Any]:
    """fastai from PyPI in its own venv; the project's packages (torch, ...) are reused, not copied.

    ``uv venv --python`` of the project's interpreter makes a venv of the base Python, so the
    project's site-packages are added by a ``.pth`` file; uv's resolver is told to leave every
    package the project already has out (an override with a never-true marker), then every
    requirement of what it installed is checked against the versions the venv sees.
    """
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed to build fastai's virtual environment")
    subprocess.run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
                   check=True)  # fmt: skip
    python = venv / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_output([str(python), "-c", where]).strip())
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_headstart_project.pth").write_text("".join(f"{p}\n" for p in paths))
    frozen = _output([uv, "pip", "freeze", "--python", sys.executable]).splitlines()
    names = [line.split("==")[0] for line in frozen if "==" in line]
    overrides = venv / "project-overrides.txt"
    overrides.write_text("".join(f"{n} ; sys_platform == 'never'\n" for n in names))
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), requirement,
                    "--overrides", str(overrides)], check=True)  # fmt: skip
    check = _fastai_worker(python, {"mode": "check", "site": str(site)}, venv / "check.json")
    ours = _project_torch()
    if check["unmet"] or any(check[k] != v for k, v in ours.items()):
        raise SystemExit(f"fastai's venv is not usable: {check['unmet']}, torch {check} vs {ours}")
    print(f"fastai {check['fastai']} in {venv}: torch {check['torch_version']} (the project's, "
          f"{check['torch_file']}), timm {check['timm']}; all requirements met")  # fmt: skip
    return {"python": str(python), **check}


def _project_torch() -> dict[str, str]:
    """The project's torch: version and file (fastai's venv must import this one)."""
    import torch

    return {"torch_version": str(torch.__version__), "torch_file": str(torch.__file__)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _output(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


# ----------------------------------------------------------------------- fastai (its venv)


def fastai_check(site: str) -> dict[str, Any]:
    """In fastai's venv: versions, where torch comes from, unmet requirements, recipe defaults."""
    import importlib.metadata as md
    import inspect

    import fastai
    import timm
    import torch
    from fastai.vision.all import ImageDataLoaders, Learner, aug_transforms, vision_learner
    from packaging.requirements import Requirement

    unmet = []
    for dist in md.distributions(path=[site]):
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                have = None
            if have is None or not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{dist.metadata['Name']} needs {req}, has {have}")

    def defaults(fn: Any) -> dict[str, Any]:
        params = inspect.signature(fn).parameters.values()
        return {p.name: repr(p.default) for p in params if p.default is not p.empty}

    return {
        "fastai": fastai.__version__, "timm": timm.__version__, "unmet": unmet,
        "torch_version": str(torch.__version__), "torch_file": str(torch.__file__),
        "defaults": {
            "fine_tune": defaults(Learner.fine_tune), "aug_transforms": defaults(aug_transforms),
            "vision_learner": defaults(vision_learner),
            "from_folder": defaults(ImageDataLoaders.from_folder),
        },
    }  # fmt: skip


def fastai_train(job: dict[str, Any]) -> dict[str, Any]:
    """fastai's default fine-tuning recipe (runs in fastai's venv)."""
    from fastai.vision.all import (
        CSVLogger,
        ImageDataLoaders,
        Normalize,
        Resize,
        accuracy,
        aug_transforms,
        set_seed,
        vision_learner,
    )

    set_seed(job["seed"])
    out = Path(job["out"])
    dls = ImageDataLoaders.from_folder(
        job["data"], train="train", valid="val",
        item_tfms=Resize(job["size"]), batch_tfms=aug_transforms(),
    )  # fmt: skip
    learn = vision_learner(dls, TIMM_ARCH, metrics=accuracy, path=out,
                           pretrained_cfg_overlay={"file": job["weights"]},
                           cbs=CSVLogger("history.csv", append=True))  # fmt: skip
    checked = _same_as_file(learn.model[0].model, job["weights"])
    norm = [t for t in dls.after_batch.fs if isinstance(t, Normalize)]
    stats = [{"mean": t.mean.flatten().tolist(), "std": t.std.flatten().tolist()} for t in norm]
    start = time.perf_counter()
    learn.fine_tune(job["epochs"] - job["head_epochs"], freeze_epochs=job["head_epochs"])
    fit_seconds = time.perf_counter() - start
    rows = [r for r in csv.DictReader((out / "history.csv").open()) if r["epoch"] != "epoch"]
    accs = [float(r["accuracy"]) for r in rows]
    return {"val_acc_final": accs[-1], "val_acc_max": max(accs), "epochs": rows,
            "fit_seconds": fit_seconds, "train_images": len(dls.train_ds),
            "val_images": len(dls.valid_ds), "batch_size": dls.bs,
            "body_tensors_from_file": checked, "normalize_mean_std": stats}  # fmt: skip


def _same_as_file(model: Any, weights: str) -> int:
    """How many tensors of ``model`` equal the weights file's (all of them, or exit)."""
    import torch

    source = torch.load(weights, map_location="cpu", weights_only=True)
    state = model.state_dict()
    differ = [k for k, v in state.items() if k not in source or not torch.equal(v, source[k])]
    if differ or not state:
        raise SystemExit(f"fastai's model does not hold the weights of {weights}: {differ[:5]}")
    return len(state)


def _fastai_worker(python: Path, job: dict[str, Any], result: Path) -> dict[str, Any]:
    """Run this file's fastai worker in fastai's venv; return what it wrote."""
    spec = result.with_suffix(".job.json")
    spec.write_text(json.dumps({**job, "result": str(result)}))
    subprocess.run([str(python), __file__, "--fastai-worker", str(spec)], check=True)
    return json.loads(result.read_text())


def fastai_worker_main(spec: Path) -> None:
    """Entry point inside fastai's venv."""
    job = json.loads(spec.read_text())
    answer = fastai_check(job["site"]) if job["mode"] == "check" else fastai_train(job)
    Path(job["result"]).write_text(json.dumps(answer, indent=2) + "\n")


# --------------------------------------------------------------------------------- the runs


def run_headstart(data: Path, out: Path, *, epochs: int, head: int, size: int, seed: int) -> dict:
    """``headstart train`` at its defaults, fresh cache; best val acc and test acc of the run."""
    from headstart.artifact import read_meta
    from headstart.run_folder import RunFolder

    cmd = ["headstart", "train", str(data), "--epochs", str(epochs), "--head-epochs", str(head),
           "--image-size", str(size), "--seed", str(seed), "--out", str(out / "run")]  # fmt: skip
    env = {**os.environ, "HEADSTART_CACHE": str(out / "cache")}
    wall = _timed([sys.executable, "-m", "headstart", *cmd[1:]], out / "log.txt", env=env)
    run = RunFolder(out / "run")
    accs = [float(r["val_acc"]) for r in run.read_history()]
    meta = read_meta(run.model_dir)
    metrics = meta.get("metrics") or {}
    best = metrics.get("val") or {}  # the epoch the saved model comes from
    test = metrics.get("test") or {}
    recipe = f"{meta.get('strategy')} {head} head + {epochs - head} full epochs (defaults)"
    return {"command": f"HEADSTART_CACHE={out / 'cache'} {shlex.join(cmd)}", "wall_s": wall,
            "val_acc": float(best.get("val_acc", max(accs))), "val_accs": accs,
            "best_epoch": meta.get("best_epoch"), "test_acc": test.get("acc"), "recipe": recipe,
            "source": _headstart_source()}  # fmt: skip


def _headstart_source() -> str:
    """Where the headstart that ran comes from, and its commit (``+dirty`` with local edits)."""
    import headstart

    src = Path(headstart.__file__).resolve().parents[1]
    try:
        commit = _output(["git", "-C", str(src), "describe", "--always", "--dirty=+dirty"])
    except (OSError, subprocess.CalledProcessError):
        commit = "no git"
    return f"{src} ({commit.strip()})"


def run_fastai(data: Path, out: Path, setup: dict, *, epochs: int, head: int, size: int,
               seed: int) -> dict:  # fmt: skip
    """fastai's ``fine_tune`` in its venv; the whole subprocess is timed."""
    job = {"mode": "train", "data": str(data), "out": str(out), "epochs": epochs,
           "head_epochs": head, "size": size, "seed": seed, "weights": setup["weights"]["file"],
           "result": str(out / "result.json")}  # fmt: skip
    (out / "job.json").write_text(json.dumps(job))
    cmd = [setup["fastai"]["python"], __file__, "--fastai-worker", str(out / "job.json")]
    wall = _timed(cmd, out / "log.txt")
    got = json.loads((out / "result.json").read_text())
    recipe = (f"fine_tune({epochs - head}, freeze_epochs={head}), aug_transforms(), "
              f"Resize({size}), bs {got['batch_size']}")  # fmt: skip
    code = (  # what fastai_train calls, for the report
        f"set_seed({seed}); dls = ImageDataLoaders.from_folder({str(data)!r}, train='train', "
        f"valid='val', item_tfms=Resize({size}), batch_tfms=aug_transforms()); "
        f"learn = vision_learner(dls, {TIMM_ARCH!r}, metrics=accuracy, path={str(out)!r}, "
        f"pretrained_cfg_overlay={{'file': {setup['weights']['file']!r}}}, "
        f"cbs=CSVLogger('history.csv', append=True)); "
        f"learn.fine_tune({epochs - head}, freeze_epochs={head})"
    )
    return {"command": f"{shlex.join(cmd)}  # runs: {code}", "wall_s": wall,
            "val_acc": got["val_acc_final"], "recipe": recipe, "test_acc": None, **got}  # fmt: skip


def run_timm(data: Path, out: Path, setup: dict, *, epochs: int, size: int, seed: int,
             warmup: int, batch: int) -> dict:  # fmt: skip
    """timm's own train.py on CPU; best top-1 from its summary.csv."""
    classes = len([p for p in (data / "train").iterdir() if p.is_dir()])
    cmd = [sys.executable, setup["timm"]["train_py"], "--data-dir", str(data),
           "--train-split", "train", "--val-split", "val", "--model", TIMM_ARCH, "--pretrained",
           "--pretrained-path", setup["weights"]["file"], "--num-classes", str(classes),
           "--img-size", str(size), "--epochs", str(epochs), "-b", str(batch), *TIMM_FLAGS,
           "--warmup-epochs", str(warmup), "--device", "cpu", "--seed", str(seed),
           "--output", str(out), "--experiment", "train"]  # fmt: skip
    wall = _timed(cmd, out / "log.txt", cwd=out)
    rows = list(csv.DictReader((out / "train" / "summary.csv").open()))
    accs = [float(r["eval_top1"]) / 100 for r in rows]
    log = (out / "log.txt").read_text()
    if "Loading pretrained weights from file" not in log:
        raise SystemExit(f"train.py did not say it loaded the pretrained file; see {out}/log.txt")
    lr = 0.1 * batch / 256
    recipe = (f"train.py: SGD 0.9, lr {lr:g} (0.1 x {batch}/256), cosine, {warmup} warm-up "
              "epochs, smoothing 0.1, RRC + flip")  # fmt: skip
    return {"command": shlex.join(cmd), "wall_s": wall, "val_acc": max(accs), "val_accs": accs,
            "lrs": [float(r["lr"]) for r in rows], "recipe": recipe, "test_acc": None}  # fmt: skip


def _timed(cmd: list[str], log: Path, *, env: dict | None = None, cwd: Path | None = None) -> float:
    """Run ``cmd``, output to ``log``; wall seconds (exit on failure, showing the log's tail)."""
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return wall


# ----------------------------------------------------------------------------------- report


def table(results: dict[str, dict], *, epochs: int, size: int) -> str:
    """The markdown table: one row per tool."""
    lines = [
        "| tool | recipe | epochs | image size | best val accuracy | wall time | test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, r in results.items():
        acc = f"{r['val_acc']:.3f}"
        if tool == "fastai":
            acc += f" (final: fastai keeps the last epoch; max {r['val_acc_max']:.3f})"
        test = "–" if r.get("test_acc") is None else f"{r['test_acc']:.3f}"
        lines.append(f"| {tool} | {r['recipe']} | {epochs} | {size} | {acc} | "
                     f"{r['wall_s']:.1f} s | {test} |")  # fmt: skip
    return "\n".join(lines)


def compare(args: argparse.Namespace, setup: dict[str, Any]) -> None:
    """Run the chosen tools one after the other; print and save the table and the commands."""
    out = args.work / "runs" / time.strftime("%Y%m%d-%H%M%S")
    common = {"epochs": args.epochs, "size": args.image_size, "seed": args.seed}
    results: dict[str, dict] = {}
    for tool in args.only:
        (out / tool).mkdir(parents=True)
        load = os.getloadavg()
        print(f"{tool}: running (load average {load[0]:.1f})", flush=True)
        if tool == "headstart":
            r = run_headstart(args.data, out / tool, head=args.head_epochs, **common)
        elif tool == "fastai":
            r = run_fastai(args.data, out / tool, setup, head=args.head_epochs, **common)
        else:
            r = run_timm(args.data, out / tool, setup, warmup=args.timm_warmup_epochs,
                         batch=args.timm_batch_size, **common)  # fmt: skip
        r["load_before"], r["load_after"] = load, os.getloadavg()
        results[tool] = r
        print(f"  val acc {r['val_acc']:.3f}, {r['wall_s']:.1f} s: {r['command']}", flush=True)
    text = table(results, epochs=args.epochs, size=args.image_size)
    commands = "\n".join(f"{tool}: {r['command']}" for tool, r in results.items())
    (out / "table.md").write_text(f"{text}\n\n```\n{commands}\n```\n")
    doc = {"args": vars(args), "setup": setup, "results": results}
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\n{text}\n\ncommands:\n{commands}\n\nlogs and results: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="folder with train/ and val/ (test/)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--head-epochs", type=int, default=3, help="headstart and fastai")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=",".join(TOOLS), help="comma-separated subset of tools")
    parser.add_argument("--work", type=Path, default=WORK, help="setup and run folders")
    parser.add_argument("--setup", action="store_true", help="(re)build the one-time setup")
    parser.add_argument("--timm-repo", type=Path, default=TIMM_MIRROR, help="git snapshot of timm")
    parser.add_argument("--fastai", default="fastai", help="requirement, e.g. fastai==2.8.12")
    parser.add_argument("--timm-warmup-epochs", type=int, default=TIMM_RECIPE["warmup_epochs"])
    parser.add_argument("--timm-batch-size", type=int, default=TIMM_RECIPE["batch_size"])
    parser.add_argument("--fastai-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fastai_worker is not None:
        return fastai_worker_main(args.fastai_worker)
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    if unknown := sorted(set(args.only) - set(TOOLS)):
        parser.error(f"unknown tools {unknown}; use any of {', '.join(TOOLS)}")
    saved = args.work / "setup.json"
    needs_setup = any(t in args.only for t in ("fastai", "timm"))
    if args.setup or (args.data is not None and needs_setup and not saved.exists()):
        setup = run_setup(args.work, timm_repo=args.timm_repo, fastai_req=args.fastai)
    else:
        setup = json.loads(saved.read_text()) if saved.exists() else {}
    if args.data is None:
        if not args.setup:
            parser.error("give DATA (a folder with train/ and val/), or --setup")
        return None
    if not (args.data / "train").is_dir() or not (args.data / "val").is_dir():
        parser.error(f"{args.data} needs train/ and val/ class folders")
    if not 0 < args.head_epochs < args.epochs:
        parser.error("--head-epochs must be between 1 and --epochs - 1 (fastai's freeze_epochs)")
    compare(args, setup)
    return None


if __name__ == "__main__":
    main()
