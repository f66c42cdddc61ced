"""Download a file, check its sha256, and unpack zip / tar archives without leaving partial files.

The download streams to a temporary file in the destination folder; an archive is unpacked into a
temporary folder there and its files are moved into place only after every member was read.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import List, Optional, Union
from urllib.parse import urlparse

from tqdm import tqdm

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed, or what arrived is not what was expected."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest_dir: Union[str, Path], sha256: Optional[str], filename: Optional[str] = None,
             extract: bool = True, timeout: float = 60.0, progress: bool = True) -> List[Path]:
    """Fetch ``url`` into ``dest_dir``; returns the paths placed there.

    The bytes must hash to ``sha256`` (None skips the check, for files without a published hash).
    With ``extract`` a .zip / .tar(.gz) archive is unpacked into ``dest_dir`` (its member paths
    kept) and the archive itself is not kept; otherwise the file is saved as ``filename``
    (default: the URL's last path part). On any failure nothing new is left in ``dest_dir``."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    filename = filename or PurePosixPath(urlparse(url).path).name or "download"
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            actual, size, total = _stream(url, out, filename, timeout, progress)
        if total is not None and size != total:
            raise DownloadError(f"{url}: truncated download: got {size} of {total} bytes")
        if sha256 and actual != sha256.lower():
            raise ChecksumError(f"{filename} from {url}: sha256 mismatch: expected {sha256.lower()}, "
                                f"got {actual} ({size} bytes); the file was deleted — a corrupted or "
                                "truncated download, or the file changed upstream")
        if not extract:
            target = dest / filename
            os.replace(tmp, target)
            return [target]
        return extract_archive(Path(tmp), dest, name=filename)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stream(url: str, out, name: str, timeout: float, progress: bool):
    h = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=name,
                      disable=None if progress else True) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as e:
        raise DownloadError(f"{url}: connection closed early: got {size + len(e.partial)} bytes, "
                            f"{e.expected} more expected") from None
    except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts are OSErrors
        raise DownloadError(f"{url}: download failed: {e}") from None
    return h.hexdigest(), size, total


def _safe_member(name: str, archive: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise DownloadError(f"{archive}: unsafe member path {name!r} (absolute or with '..')")


def extract_archive(archive: Path, dest: Path, name: Optional[str] = None) -> List[Path]:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``dest``; returns the files placed.

    Everything is read and CRC-checked into a temporary folder in ``dest`` first; a corrupt or
    truncated archive raises :class:`DownloadError` and leaves ``dest`` as it was."""
    name = name or archive.name
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    for member in zf.namelist():
                        _safe_member(member, name)
                    broken = zf.testzip()
                    if broken is not None:
                        raise DownloadError(f"{name}: corrupt archive: member {broken!r} fails its CRC")
                    zf.extractall(staging)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive, "r:*") as tf:
                    for member in tf.getmembers():
                        _safe_member(member.name, name)
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(staging, filter="data")
                    else:  # Python without extraction filters: paths were checked above
                        tf.extractall(staging)
            else:
                raise DownloadError(f"{name}: not a zip or tar archive (corrupt or truncated?)")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DownloadError(f"{name}: corrupt or truncated archive ({e}); nothing was extracted") from None
        placed = []
        for folder, _, files in os.walk(staging):
            for f in files:
                src = Path(folder) / f
                target = dest / src.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, target)
                placed.append(target)
        return sorted(placed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
