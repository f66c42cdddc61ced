"""Synthetic logs for cost measurements (never for accuracy claims): seeded, written in chunks.

``seq``: a sequential interaction log ``user,item,timestamp`` (CSV, or Parquet by the file's suffix)
with Zipf item popularity (P(rank r) ∝ r^-a over ``--items`` items) and geometric sequence lengths of
mean ``--mean-length`` (at least ``--min-length``), one user after another in time order; read it with
``--set data.table.path=FILE``.

``ctr``: a click log shaped like Criteo's Kaggle train.txt (tab-separated, no header: label, 13
numeric fields I1-I13, 26 categorical fields C1-C26 as 8-hex-digit ids), each categorical field with
its own vocabulary (sizes spread log-uniformly from 10 to ``--max-vocab``) and Zipf draws; numerics
are rounded log-normal counts, 10 % missing; labels are drawn from a logistic model of a few fields so
that a model has something to learn (about 25 % positive). Put it at ``<root>/criteo/train.txt`` and
pass ``--data-dir <root>`` to read it as the registered ``criteo`` data set, or read it with
``data.table``.

Examples:
``python benchmarks/synth.py seq out/seq-10m.csv --users 200000 --items 100000 --mean-length 50``
``python benchmarks/synth.py ctr out/criteo/train.txt --rows 10000000 --max-vocab 10000000``
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
import pandas as pd


def zipf_sampler(n: int, a: float):
    """draw(rng, size) -> ids in [0, n) with P(id) ∝ (id + 1)^-a (id 0 the most popular)."""
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -a)
    cdf /= cdf[-1]
    return lambda rng, size: np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)


HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


def hex8(values: np.ndarray) -> np.ndarray:
    """32-bit values as 8-hex-digit strings (vectorised: digit by digit through a lookup)."""
    digits = (values.astype(np.uint64)[:, None] >> np.arange(28, -1, -4, dtype=np.uint64)) & np.uint64(15)
    return HEX[digits.astype(np.int64)].view("S8").ravel().astype(str)


def sequence_chunks(users: int, items: int, mean_length: float, min_length: int, a: float, seed: int,
                    users_per_chunk: int = 100_000) -> Iterator[pd.DataFrame]:
    """The sequential log, ``users_per_chunk`` users at a time (user ids 0.., timestamps per user)."""
    rng = np.random.default_rng(seed)
    draw = zipf_sampler(items, a)
    shuffle = rng.permutation(items)  # popularity rank -> item id, so id order says nothing
    for start in range(0, users, users_per_chunk):
        count = min(users_per_chunk, users - start)
        lengths = np.maximum(rng.geometric(1.0 / mean_length, count), min_length)
        user = np.repeat(np.arange(start, start + count), lengths)
        step = np.arange(len(user)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield pd.DataFrame({"user": user, "item": shuffle[draw(rng, len(user))],
                            "timestamp": 1_600_000_000 + 60 * step})


def ctr_chunks(rows: int, max_vocab: int, a: float, seed: int, chunk: int = 500_000) -> Iterator[pd.DataFrame]:
    """Criteo-shaped rows, ``chunk`` at a time (see the module docstring)."""
    rng = np.random.default_rng(seed)
    vocab = np.unique(np.round(np.geomspace(10, max_vocab, 26)).astype(np.int64))
    vocab = np.resize(vocab, 26)
    draws = [zipf_sampler(int(v), a) for v in vocab]
    salts = rng.integers(0, 2**31, 26)
    weights = rng.normal(0, 1, (3, 64))  # a logistic model over hashed buckets of C1, C2 and C3
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        cats = [d(rng, n) for d in draws]
        num = np.round(rng.lognormal(1.0, 1.5, (n, 13)))
        num[rng.random((n, 13)) < 0.1] = np.nan
        logit = sum(weights[f][(cats[f] * 2654435761 + salts[f]) % 64] for f in range(3)) - 1.6
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        frame = {"label": label}
        frame.update({f"I{j + 1}": pd.array(num[:, j], dtype="Int64") for j in range(13)})
        frame.update({f"C{j + 1}": hex8((cats[j] * 2654435761 + salts[j]) & 0xFFFFFFFF) for j in range(26)})
        yield pd.DataFrame(frame)


def write_chunks(chunks: Iterator[pd.DataFrame], path: Path, header: bool, sep: str) -> Tuple[int, int]:
    """Write to ``path`` (Parquet by suffix, else delimited text) through a temporary file renamed at
    the end; returns (rows, bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    try:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            for frame in chunks:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += len(frame)
            if writer is not None:
                writer.close()
        else:
            with open(tmp, "w") as f:
                for i, frame in enumerate(chunks):
                    frame.to_csv(f, sep=sep, header=header and i == 0, index=False, na_rep="")
                    rows += len(frame)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return rows, path.stat().st_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("seq", help="a sequential log user,item,timestamp")
    s.add_argument("out", type=Path)
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--items", type=int, required=True)
    s.add_argument("--mean-length", type=float, default=50.0)
    s.add_argument("--min-length", type=int, default=3)
    c = sub.add_parser("ctr", help="a Criteo-shaped click log (train.txt form)")
    c.add_argument("out", type=Path)
    c.add_argument("--rows", type=int, required=True)
    c.add_argument("--max-vocab", type=int, default=1_000_000)
    for p in (s, c):
        p.add_argument("--zipf", type=float, default=1.1, help="the popularity exponent a")
        p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.kind == "seq":
        if args.users < 1 or args.items < 2 or args.mean_length < 1:
            ap.error("--users ≥ 1, --items ≥ 2 and --mean-length ≥ 1 expected")
        chunks = sequence_chunks(args.users, args.items, args.mean_length, args.min_length, args.zipf, args.seed)
        rows, size = write_chunks(chunks, args.out, header=True, sep=",")
    else:
        if args.rows < 1 or args.max_vocab < 10:
            ap.error("--rows ≥ 1 and --max-vocab ≥ 10 expected")
        rows, size = write_chunks(ctr_chunks(args.rows, args.max_vocab, args.zipf, args.seed), args.out,
                                  header=args.out.suffix == ".parquet", sep="\t")
    print(f"wrote {args.out}: {rows:,} rows, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
