"""Encoded CTR data cached once on disk as ``.npy`` files and loaded back memory-mapped.

Layout: ``<cache root>/<name>-<key>/`` holds ``{train,valid,test}_{cat,num,label}.npy`` and
``schema.json`` (fields, vocabulary sizes, numeric names, rows per split, the settings). ``key`` is
the first 16 hex digits of the sha256 of the canonical JSON of everything the arrays depend on: the
dataset name, each input file's path, size and modification time, the encode settings (min_count,
hash_buckets, seed, split ratios), skip_bad_rows and the encoder version. Any changed setting or
re-written input file therefore gets a new folder; old folders are left for the user to delete.

Atomicity: a build writes into a temporary sibling folder ``.tmp-<name>-<key>-XXXX`` and renames it
into place when complete, so a reader sees a whole cache or none; a failing build removes its
temporary folder. If two processes build the same key at once, the second rename fails and that
process drops its copy and uses the first. (A build killed by SIGKILL leaves its ``.tmp-`` folder.)

The default cache root is ``<data root>/.cache/ctr``; when that cannot be written, or the data root is
marked read-only (no write bits, as a shared data folder), it is ``$XDG_CACHE_HOME/recarch/ctr``
(``~/.cache/recarch/ctr``). Loading uses
``np.load(mmap_mode="r")``, so batches are read from disk and data larger than memory works.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..io import write_json_atomic
from .encode import ENCODING_VERSION, SPLITS, EncodeSettings, encode_to_folder
from .readers import RawChunk
from .table import CTRData, CTRSchema, CTRTable

PROGRESS_MIN_BYTES = 64 << 20  # progress bars by default only for inputs at least this big
SCHEMA_FILE = "schema.json"


def settings_key(settings: Mapping) -> str:
    """16 hex digits identifying ``settings`` (a JSON-able mapping; key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_fingerprints(paths: Sequence[Path]) -> list:
    """(path, size, mtime in ns) of each input: a re-written file changes the cache key."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def _writable(path: Path) -> bool:
    """Whether ``path`` (or, when absent, its nearest existing folder) may be written: by access and
    by its mode bits, so a folder marked read-only (mode 555) counts as read-only even for root."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK) and bool(p.stat().st_mode & 0o222)


def default_cache_root(data_root: Path) -> Path:
    """``<data root>/.cache/ctr`` when it can be written, else the user cache folder."""
    preferred = Path(data_root) / ".cache" / "ctr"
    if _writable(preferred):
        return preferred
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recarch" / "ctr"


def with_progress(chunks: Iterable[RawChunk], total_bytes: int, desc: str,
                  enabled: Optional[bool] = None) -> Iterator[RawChunk]:
    """Yield ``chunks`` while a tqdm bar shows the bytes of the input files parsed so far."""
    if enabled is None:
        enabled = total_bytes >= PROGRESS_MIN_BYTES
    done: Dict[str, int] = {}
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, disable=not enabled,
              leave=False) as bar:
        for chunk in chunks:
            step = chunk.offset - done.get(chunk.source, 0)
            done[chunk.source] = chunk.offset
            if step > 0:
                bar.update(step)
            yield chunk


def build_folder(name: str, chunks: Iterable[RawChunk], folder: Path, settings: EncodeSettings,
                 key_settings: Optional[Mapping] = None) -> CTRSchema:
    """Encode ``chunks`` into ``folder`` (which exists) and write its ``schema.json`` last."""
    schema, rows = encode_to_folder(chunks, folder, settings)
    write_json_atomic(folder / SCHEMA_FILE, {
        "name": name, "fields": schema.fields, "vocab_sizes": schema.vocab_sizes,
        "numeric": schema.numeric, "rows": rows, "encoding_version": ENCODING_VERSION,
        "settings": dict(key_settings) if key_settings is not None else settings.as_dict(),
    })
    return schema


def cache_folder(cache_root: Path, name: str, key_settings: Mapping) -> Path:
    return Path(cache_root) / f"{name}-{settings_key(key_settings)}"


def is_complete(folder: Path) -> bool:
    return (Path(folder) / SCHEMA_FILE).is_file()


def cached_encode(name: str, make_chunks: Callable[[], Iterable[RawChunk]], settings: EncodeSettings,
                  key_settings: Mapping, cache_root: Path) -> Path:
    """The cache folder for these settings, building it (atomically) when absent."""
    final = cache_folder(cache_root, name, key_settings)
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        build_folder(name, make_chunks(), tmp, settings, key_settings)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the cache from other users of a shared root
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):  # not a lost race: a real error
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _load(path: Path, mmap: bool) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_encoded(folder: Path, mmap: bool = True) -> CTRData:
    """A :class:`CTRData` from a cache folder; arrays are read-only memory maps when ``mmap``."""
    folder = Path(folder)
    meta = json.loads((folder / SCHEMA_FILE).read_text(encoding="utf-8"))
    schema = CTRSchema(fields=list(meta["fields"]), vocab_sizes=[int(v) for v in meta["vocab_sizes"]],
                       numeric=list(meta["numeric"]))
    tables = {}
    for s in SPLITS:
        cat, num, label = (_load(folder / f"{s}_{part}.npy", mmap) for part in ("cat", "num", "label"))
        n = int(meta["rows"][s])
        if cat.shape != (n, schema.num_fields) or num.shape != (n, len(schema.numeric)) or label.shape != (n,):
            raise ValueError(f"{folder}: {s} arrays do not match {SCHEMA_FILE} (a damaged cache? delete "
                             f"the folder to rebuild it)")
        tables[s] = CTRTable(cat=cat, num=num, label=label)
    return CTRData(name=str(meta["name"]), schema=schema, **tables)


def encode_in_memory(name: str, chunks: Iterable[RawChunk], settings: EncodeSettings) -> CTRData:
    """Encode without a cache: built in a temporary folder, loaded into memory, folder removed."""
    with tempfile.TemporaryDirectory(prefix="recarch-ctr-") as tmp:
        build_folder(name, chunks, Path(tmp), settings)
        return load_encoded(Path(tmp), mmap=False)
