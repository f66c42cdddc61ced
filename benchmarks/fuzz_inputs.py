"""Broken input files for every reader of both tracks, and what each reader must do with them.

A case is (reader, mutation, seed): the reader's clean file is written, the mutation turns its bytes
into a broken (or equivalent) file, and the reader reads it the way a run does. The outcome is one of

* ``same``: a mutation that keeps the content (gzip, CRLF line ends, no final newline) parsed to the
  clean file's arrays: as required;
* ``parsed``: a broken file that still reads (e.g. cut at a line end: fewer rows);
* ``named``: an error a user can act on: a ValueError (the CLI's exit 2) whose message names the file;
* ``crash``: anything else (another exception, an error that does not name the file, or an
  equivalent file read differently), and ``partial``: a failed CTR read that left a cache entry.

Used by ``tests/test_fuzz.py`` (a bounded sample in CI) and ``benchmarks/bench_fuzz.py`` (thousands).
"""
from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np


# ---- the clean files --------------------------------------------------------------------------
def _rows(seed: int = 0):
    rng = random.Random(seed)
    return [(u, rng.randint(1, 30), t) for u in range(1, 13) for t in range(rng.randint(4, 7))]


def sequential_csv() -> str:
    return "user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in _rows())


def atomic_inter() -> str:
    return "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + \
        "".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{t}\n" for u, i, t in _rows())


def s3rec_lines() -> str:
    by_user: Dict[int, list] = {}
    for u, i, _ in _rows():
        by_user.setdefault(u, []).append(i)
    return "".join(f"{u} {' '.join(map(str, items))}\n" for u, items in by_user.items())


def sasrec_pairs() -> str:
    return "".join(f"{u} {i}\n" for u, i, _ in _rows())


def click_rows(sep: str) -> str:
    rng = random.Random(1)
    lines = [sep.join(["label", "user", "item", "hour", "price"])]
    for r in range(200):
        lines.append(sep.join([str(r % 2), f"u{rng.randint(1, 20)}", f"i{rng.randint(1, 30)}",
                               str(rng.randint(0, 23)), f"{rng.random() * 100:.2f}"]))
    return "\n".join(lines) + "\n"


def click_parquet() -> bytes:
    import io

    import pandas as pd

    rows = [line.split(",") for line in click_rows(",").splitlines()]
    frame = pd.DataFrame(rows[1:], columns=rows[0]).astype({"label": int, "hour": int, "price": float})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def libfm_lines() -> str:
    rng = random.Random(2)
    return "".join(f"{r % 2} {rng.randint(0, 9)}:1 {10 + rng.randint(0, 9)}:1 {20 + rng.randint(0, 9)}:1\n"
                   for r in range(200))


# ---- the readers, as a run calls them ---------------------------------------------------------
def _read_sequential_table(path: Path, scratch: Path):
    from recarch import run

    cfg = run.RunConfig(data=run.DataConfig(table=run.TableConfig(path=str(path))))
    data = run.load_dataset(cfg, str(scratch))
    return [data.offsets, data.items]


def _frame(df) -> list:
    return [df[c].to_numpy() for c in df.columns]


def _read_atomic(path: Path, scratch: Path):
    from recarch.data.readers import read_atomic_inter

    return _frame(read_atomic_inter(path))


def _read_s3rec(path: Path, scratch: Path):
    from recarch.data.readers import read_user_sequences

    return _frame(read_user_sequences(path))


def _read_sasrec(path: Path, scratch: Path):
    from recarch.data.readers import read_user_item_pairs

    return _frame(read_user_item_pairs(path))


def _read_clicks(path: Path, scratch: Path):
    from recarch.ctr.click_log import ClickTableConfig
    from recarch.ctr.datasets import CTRDataConfig

    data = CTRDataConfig(table=ClickTableConfig(path=str(path), numeric=["price"])).load(
        str(scratch), cache_dir=str(scratch / "cache"), progress=False)
    return [a for split in (data.train, data.valid, data.test) for a in (split.cat, split.num, split.label)]


def _read_libfm(path: Path, scratch: Path):
    from recarch.ctr.readers.libfm import read_libfm

    chunk = read_libfm(path, n_features=3)
    return [chunk.cat.to_numpy(), chunk.num, chunk.label]


@dataclass(frozen=True)
class Reader:
    clean: Callable[[], str | bytes]  # bytes: a binary format, which only the byte-level mutations apply to
    read: Callable[[Path, Path], list]
    suffix: str
    sep: str  # the field separator, for ragged rows
    numeric_column: int  # a numeric field (for NaN / inf), -1: none
    label_column: int  # the label field, -1: none
    header: bool
    cache: bool = False  # writes a cache entry (CTR): a failed read must leave none


READERS: Dict[str, Reader] = {
    "sequential-csv": Reader(sequential_csv, _read_sequential_table, ".csv", ",", 2, -1, True),
    "recbole-atomic": Reader(atomic_inter, _read_atomic, ".inter", "\t", 2, -1, True),
    "s3rec-lines": Reader(s3rec_lines, _read_s3rec, ".txt", " ", -1, -1, False),
    "sasrec-pairs": Reader(sasrec_pairs, _read_sasrec, ".txt", " ", -1, -1, False),
    "ctr-csv": Reader(lambda: click_rows(","), _read_clicks, ".csv", ",", 4, 0, True, cache=True),
    "ctr-tsv": Reader(lambda: click_rows("\t"), _read_clicks, ".tsv", "\t", 4, 0, True, cache=True),
    "ctr-parquet": Reader(click_parquet, _read_clicks, ".parquet", "", -1, -1, False, cache=True),
    "libfm": Reader(libfm_lines, _read_libfm, ".libfm", " ", -1, 0, False),
}


# ---- the mutations: (clean bytes, reader, rng) → (bytes, whether the content is the clean one's) -------
def _lines(raw: bytes):
    return raw.decode().split("\n")[:-1]


def _join(lines) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _body_line(lines, reader: Reader, rng) -> int:
    return rng.randrange(1 if reader.header else 0, len(lines))


def _set_field(raw: bytes, reader: Reader, rng, column: int, value: str) -> bytes:
    lines = _lines(raw)
    i = _body_line(lines, reader, rng)
    fields = lines[i].split(reader.sep)
    fields[min(column, len(fields) - 1)] = value
    lines[i] = reader.sep.join(fields)
    return _join(lines)


def truncate_bytes(raw, reader, rng):
    return raw[: rng.randrange(len(raw))], False


def truncate_lines(raw, reader, rng):
    lines = _lines(raw)
    return _join(lines[: rng.randrange(1, len(lines))]), False


def nul_byte(raw, reader, rng):
    at = rng.randrange(len(raw))
    return raw[:at] + b"\x00" + raw[at:], False


def latin1_field(raw, reader, rng):
    lines = _lines(raw)
    i = _body_line(lines, reader, rng)
    return b"\n".join(line.encode("latin-1") + (b"\xe9" if j == i else b"") for j, line in enumerate(lines)) + b"\n", False


def utf16(raw, reader, rng):
    return raw.decode().encode("utf-16"), False


def ragged_short(raw, reader, rng):
    lines = _lines(raw)
    i = _body_line(lines, reader, rng)
    fields = lines[i].split(reader.sep)
    lines[i] = reader.sep.join(fields[:-1]) if len(fields) > 1 else ""
    return _join(lines), False


def ragged_long(raw, reader, rng):
    lines = _lines(raw)
    i = _body_line(lines, reader, rng)
    lines[i] += reader.sep + "7"
    return _join(lines), False


def bad_label(raw, reader, rng):
    column = reader.label_column if reader.label_column >= 0 else 0
    return _set_field(raw, reader, rng, column, rng.choice(["x", "2", "-1", ""])), False


def non_finite(raw, reader, rng):
    column = reader.numeric_column if reader.numeric_column >= 0 else 1
    return _set_field(raw, reader, rng, column, rng.choice(["nan", "inf", "-inf", "NaN"])), False


def huge_id(raw, reader, rng):
    return _set_field(raw, reader, rng, 1 if reader.label_column == 0 else 0, "9" * rng.randint(20, 60)), False


def empty(raw, reader, rng):
    return b"", False


def header_only(raw, reader, rng):
    return _join(_lines(raw)[:1]), False


def gzip_cut(raw, reader, rng):
    packed = gzip.compress(raw, mtime=0)
    return packed[: rng.randrange(10, len(packed) - 1)], False


def gzipped(raw, reader, rng):
    return gzip.compress(raw, mtime=0), True


def crlf(raw, reader, rng):
    return raw.replace(b"\n", b"\r\n"), True


def no_final_newline(raw, reader, rng):
    return raw.rstrip(b"\n"), True


MUTATIONS: Dict[str, Callable] = {f.__name__: f for f in (
    truncate_bytes, truncate_lines, nul_byte, latin1_field, utf16, ragged_short, ragged_long, bad_label,
    non_finite, huge_id, empty, header_only, gzip_cut, gzipped, crlf, no_final_newline)}
BYTE_MUTATIONS = ("truncate_bytes", "nul_byte", "empty")  # the ones that apply to a binary file too


def cases(reader_name: str):
    """The mutations that apply to the reader's format."""
    return BYTE_MUTATIONS if isinstance(READERS[reader_name].clean(), bytes) else tuple(MUTATIONS)


def _equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def run_case(reader_name: str, mutation: str, seed: int, folder: Path) -> Tuple[str, str]:
    """(outcome, detail) of one case in a fresh ``folder`` (see the module docstring)."""
    reader = READERS[reader_name]
    clean = reader.clean()
    clean = clean if isinstance(clean, bytes) else clean.encode()
    folder.mkdir(parents=True, exist_ok=True)
    raw, same = MUTATIONS[mutation](clean, reader, random.Random(seed))
    gz = mutation.startswith("gzip")
    path = folder / f"input{reader.suffix}{'.gz' if gz else ''}"
    path.write_bytes(raw)
    try:
        got = reader.read(path, folder / "scratch")
    except ValueError as err:  # ConfigError and DataFormatError are ValueErrors: the CLI's exit 2
        message = str(err)
        if path.name not in message:
            return "crash", f"error without the file's name: {message[:200]}"
        if reader.cache and any((folder / "scratch" / "cache").glob("*/*")):
            return "partial", "a failed read left a cache entry"
        return "named", message[:200]
    except Exception as err:  # noqa: BLE001 (a crash is what this counts)
        return "crash", f"{type(err).__name__}: {str(err)[:200]}"
    if same:
        clean_path = folder / "clean" / f"input{reader.suffix}"
        clean_path.parent.mkdir(exist_ok=True)
        clean_path.write_bytes(clean)
        expected = reader.read(clean_path, folder / "scratch-clean")
        return ("same", "") if _equal(got, expected) else ("crash", "an equivalent file read differently")
    return "parsed", ""
