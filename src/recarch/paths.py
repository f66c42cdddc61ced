"""Where datasets and runs live: ``--data-dir``, else ``$RECARCH_DATA``, else the user cache."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def data_root(data_dir: Optional[str] = None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("RECARCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "recarch" / "data"
