"""Atomic file writes: a temp file in the target's folder, flushed to disk, then os.replace.

A reader (or a run killed mid-write) sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (parent folders are created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from other users of a shared folder
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _to_json(obj: Any) -> Any:
    # numpy / torch scalars and arrays, and paths, are common in results; anything else is an error.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"write_json_atomic: cannot serialise {type(obj).__name__} to JSON")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; numpy/torch values and paths are converted."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=_to_json) + "\n")


def _flat(row: dict) -> dict:
    """A history row as scalars: a list value becomes one column per entry (``alpha_softmax[0]``, …)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, (list, tuple)):
            out.update({f"{key}[{i}]": v for i, v in enumerate(value)})
        else:
            out[key] = value
    return out


def write_csv_atomic(path: str | os.PathLike, rows: list) -> Path:
    """Write dict ``rows`` as CSV to ``path`` atomically, one column per key seen (first-seen order),
    list values spread over indexed columns; a missing value is an empty cell."""
    flat = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return write_text_atomic(path, buffer.getvalue())


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG to a temporary file, close it, then rename it onto ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
