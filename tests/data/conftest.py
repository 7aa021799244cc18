"""Data folders with folder links back into the data (the walk must skip them) and links out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_image_folder


@dataclass
class LoopedData:
    """A data folder with folder links, and what ``load_splits`` and the audit must find.

    Attributes:
        root: The data folder.
        loops: Link path -> its real target, for every link that must be skipped and reported.
        totals: Images per class over all splits when the loops are skipped.
    """

    root: Path
    loops: dict[str, str]
    totals: dict[str, int]


@pytest.fixture(params=["flat", "split"])
def looped_data(request: pytest.FixtureRequest, tmp_path: Path) -> LoopedData:
    """A flat or split data folder with links back into it, and links out of it (followed).

    Classes a, b, c, and d, a link to a class folder outside the data; a also links to a folder of
    images outside the data.
    """
    layout = request.param
    root = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), n=5, layout=layout)
    classes = root / "train" if layout == "split" else root
    (classes / "a" / "deep").mkdir()
    (classes / "a" / "a_004.png").rename(classes / "a" / "deep" / "a_004.png")
    n_out = 5 if layout == "flat" else 7
    make_image_folder(tmp_path / "outside", ("d", "more"), n_out, size=(41, 33))  # other pixels
    os.symlink(tmp_path / "outside" / "d", classes / "d")  # a class folder outside the data
    links = {
        classes / "a" / "loop": "..",  # the user's case: back to the split (or data) folder
        classes / "a" / "deep" / "up": "../../..",  # above the split folder
        classes / "b" / "self": ".",  # its own class folder
        classes / "c" / "to_a": "../a",  # another class folder
        classes / "c" / "into_a": "../a/deep",  # inside another class folder
        classes / "c" / "to_d": "../d/",  # into the class folder that lies outside the data
    }
    if layout == "split":
        links[classes / "c" / "to_val"] = "../../val"  # another split folder
    for link, target in links.items():
        os.symlink(target, link, target_is_directory=True)
    os.symlink(tmp_path / "outside" / "more", classes / "a" / "more")  # out of the data: followed
    totals = {"a": 2 * n_out, "b": n_out, "c": n_out, "d": n_out}
    loops = {str(link): os.path.realpath(link) for link in links}
    return LoopedData(root.absolute(), loops, totals)
