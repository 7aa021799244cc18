"""The embeddings file ``headstart embed`` writes: numpy ``.npz``, or Parquet through pyarrow.

``.npz`` arrays: ``embeddings`` float32 (N, D), ``paths`` and ``labels`` (class names, ``""`` for
an image without a class) of length N, ``label_ids`` int64 (index into ``classes``, -1 without a
class), ``classes``, and ``format``, ``model``, ``preprocessing`` (JSON) saying what wrote it.
``.parquet`` rows: ``path``, ``label`` (null without a class), ``embedding`` (a fixed-size list of
float32); the schema's metadata holds ``format``, ``model``, ``classes`` and ``preprocessing``.
Either loads without unpickling (``np.load(allow_pickle=False)``, ``pyarrow.parquet``). A file
is only ever replaced when it is one of these, written by headstart.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import IO

import numpy as np

from headstart.errors import ConfigError
from headstart.files import atomic_write, make_dirs, refuse_inside
from headstart.pipeline.embed import Embeddings

__all__ = ["EMBED_FORMAT", "FORMATS", "check_embed_out", "is_embed_file", "write_embeddings"]

EMBED_FORMAT = "headstart-embeddings"
FORMATS = (".npz", ".parquet")
_PYARROW_HINT = "pip install pyarrow (or the headstart[embed] extra)"


def check_embed_out(out: Path, data: Path) -> None:
    """Refuse an ``--out`` inside DATA, of another type, a folder, or a file headstart did not
    write; for ``.parquet``, refuse when pyarrow is missing (all before the model runs).

    Raises:
        ConfigError: One line saying why and what to use instead.
    """
    refuse_inside(out, data)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name, e.g. --out {out}/embed.npz.")
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"--out {out}: unknown file type {suffix or '(none)'}; use one of "
            f"{', '.join(FORMATS)} (e.g. --out {out.with_suffix('.npz').name})."
        )
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(
            f"--out {out}: writing Parquet needs pyarrow, which is not installed; "
            f"{_PYARROW_HINT}, or write --out {out.with_suffix('.npz').name}."
        )
    if (out.exists() or out.is_symlink()) and not is_embed_file(out):
        raise ConfigError(
            f"--out {out} exists and is not an embeddings file headstart wrote; headstart does "
            "not overwrite it: choose another path."
        )


def is_embed_file(path: str | Path) -> bool:
    """Whether ``path`` is an embeddings file that ``write_embeddings`` wrote."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return False
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata or {}
            return metadata.get(b"format") == EMBED_FORMAT.encode()
        with np.load(path, allow_pickle=False) as archive:
            return "format" in archive.files and str(archive["format"]) == EMBED_FORMAT
    except Exception:  # unreadable, not a zip, not Parquet (pyarrow's own errors): not ours
        return False


def write_embeddings(result: Embeddings, out: str | Path, *, data: str | Path) -> Path:
    """Write ``result`` to ``out`` (``.npz`` or ``.parquet``) atomically; returns the path.

    Raises:
        ConfigError: ``out`` may not or cannot be written.
    """
    out = Path(out)
    check_embed_out(out, Path(data))
    make_dirs(out.parent)
    meta = {
        "format": EMBED_FORMAT,
        "model": result.model,
        "preprocessing": json.dumps(result.preprocessing.to_dict()),
    }
    writer = _parquet_writer if out.suffix.lower() == ".parquet" else _npz_writer
    try:
        return atomic_write(out, lambda handle: writer(result, meta, handle))
    except OSError as exc:
        raise ConfigError(
            f"cannot write {out}: {exc.strerror or exc}; choose a writable --out."
        ) from None


def _npz_writer(result: Embeddings, meta: dict[str, str], handle: IO[bytes]) -> None:
    names = [name or "" for name in result.label_names()]
    np.savez(
        handle,
        embeddings=result.vectors.astype(np.float32, copy=False),
        paths=np.array(result.paths, dtype=np.str_),
        labels=np.array(names, dtype=np.str_),
        label_ids=result.labels.astype(np.int64, copy=False),
        classes=np.array(result.classes, dtype=np.str_),
        **{key: np.array(value) for key, value in meta.items()},
    )


def _parquet_writer(result: Embeddings, meta: dict[str, str], handle: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(result.vectors, dtype=np.float32)
    width = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), width)
    table = pa.table(
        {
            "path": pa.array(result.paths),
            "label": pa.array(result.label_names()),
            "embedding": column,
        }
    )
    schema_meta = {**meta, "classes": json.dumps(list(result.classes))}
    pq.write_table(table.replace_schema_metadata(schema_meta), handle)
