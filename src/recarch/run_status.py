"""A run folder is made only once its inputs have been read and validated, and it says how its run
ended: ``status.json`` holds ``running`` while the run works (and still, after a kill, so that
``--resume`` goes on), ``finished``, or ``failed`` with the error, so that a failed run never looks
like a finished one; and the git commit of the code that ran it.
"""
from __future__ import annotations

import datetime as _dt
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator

import yaml

from recarch.cost.report import git_commit
from recarch.io import write_json_atomic, write_text_atomic

STATUS = "status.json"


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def open_run(run_dir: Path, config: Dict[str, Any]) -> Path:
    """Create ``run_dir`` with its resolved ``config.yaml`` (call once the inputs are valid)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return run_dir


@contextmanager
def recorded(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Mark ``run_dir`` running for the block, then finished, or failed with the error that left it
    (the error goes on). ``enabled``: False on the ranks of a data-parallel run that do not write."""
    if not enabled:
        yield
        return
    code = {"commit": git_commit()}  # the checkout this (last) start ran, -dirty with uncommitted changes
    write_json_atomic(run_dir / STATUS, {"status": "running", "started_at": _now(), **code})
    try:
        yield
    except BaseException as err:
        write_json_atomic(run_dir / STATUS, {"status": "failed", "error": f"{type(err).__name__}: {err}",
                                             "failed_at": _now(), **code})
        raise
    write_json_atomic(run_dir / STATUS, {"status": "finished", "finished_at": _now(), **code})
