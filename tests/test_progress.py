"""Long passes report their progress to whoever asked, and to nobody otherwise."""

from __future__ import annotations

from headstart.progress import report, reporting
from tests.conftest import make_image_folder


def _heard():
    calls: list[tuple[str, int, int]] = []
    return calls, lambda task, done, total: calls.append((task, done, total))


def test_nothing_is_heard_without_a_hook():
    report("audit", 1, 2)  # no hook: nothing happens, nothing fails


def test_the_audit_and_the_image_cache_report_every_file(tmp_path, monkeypatch):
    from headstart.data.audit import audit_folder
    from headstart.data.image_cache import build_decoded_cache
    from headstart.preprocessing import PreprocessSpec

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    data = make_image_folder(tmp_path / "data", n=3)
    calls, hook = _heard()
    with reporting(hook):
        report_ = audit_folder(data, workers=2)
        samples = [s for split in (report_.clean_splits().train,) for s in split]
        build_decoded_cache(samples, PreprocessSpec(input_size=16), root=tmp_path / "images")
    audit = [c for c in calls if c[0] == "audit"]
    assert [c[1] for c in audit] == list(range(1, 7)) and {c[2] for c in audit} == {6}
    decoding = [c for c in calls if c[0] == "decoding images into the cache"]
    assert decoding[-1] == ("decoding images into the cache", len(samples), len(samples))


def test_prediction_reports_the_files_it_ran(tmp_path):
    from headstart.inference.load import load_model
    from headstart.inference.predict import predict_files

    data = make_image_folder(tmp_path / "data", n=2)
    files = sorted(str(p) for p in data.rglob("*.png"))
    calls, hook = _heard()
    with reporting(hook):
        predict_files(load_model("bundled:efficientnet_lite0", image_size=64), files, batch_size=3)
    assert calls[-1] == ("predicting", 4, 4) and len(calls) == 2  # two batches


def test_bars_come_and_go_with_their_passes():
    import io

    from rich.console import Console
    from rich.progress import Progress

    from headstart.cli.console import PassBars

    bar = Progress(console=Console(file=io.StringIO(), force_terminal=True), transient=True)
    bars = PassBars(bar)
    bars("audit", 1, 3)
    assert [t.description for t in bar.tasks] == ["audit"]
    bars("audit", 3, 3)
    assert bar.tasks == []
    bar.stop()
