"""Commands that need no network of tensors start without importing one (issue 14's startup
target): the heavy packages load only on the paths that use them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import make_image_folder

HEAVY = ("torch", "torchvision", "timm", "lightning", "lightning_fabric")
PROBE = """
import json, sys
from headstart.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def _imported(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["models", "list", "bundled:*"]])
def test_help_and_listing_import_no_heavy_package(args):
    assert _imported(*args) == []


def test_check_reads_a_folder_without_torch(tmp_path):
    data = make_image_folder(tmp_path / "photos", ("cat", "dog"), n=3)
    assert _imported("check", str(data)) == []


def test_listing_torchvision_models_needs_torchvision_only():
    assert _imported("models", "list", "tv:resnet1*") == ["torch", "torchvision"]
