"""Bad inputs, counted: every reader of both tracks on thousands of broken files (benchmarks/fuzz_inputs.py).

For each reader and each mutation that applies to its format, ``--seeds`` seeded cases: truncation at
a byte or a line, a NUL byte, a latin-1 byte in UTF-8 text, UTF-16, ragged rows, bad labels, NaN and
inf in a numeric field, ids of 20-60 digits, empty and header-only files, gzip cut short, and three
files with the clean content (gzipped, CRLF line ends, no final newline) that must read to the clean
arrays. Writes ``benchmarks/results/fuzz.json`` (counts per reader and mutation, and every case that
crashed) and the totals BENCHMARKS.md shows. Example: ``python benchmarks/bench_fuzz.py --seeds 50``.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import warnings
from pathlib import Path

from recarch.cost import machine_info
from recarch.io import write_json_atomic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fuzz_inputs import READERS, cases, run_case  # noqa: E402

FAILURES = ("crash", "partial")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="cases per reader and mutation")
    ap.add_argument("--out", default=str(HERE / "results" / "fuzz.json"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # pandas' cast warnings on NaN ids; the outcome is what counts
    counts = {reader: {} for reader in READERS}
    failures = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for reader in READERS:
            for mutation in cases(reader):
                tally = collections.Counter()
                for seed in range(args.seeds):
                    outcome, detail = run_case(reader, mutation, seed, Path(scratch) / f"{reader}-{mutation}-{seed}")
                    tally[outcome] += 1
                    if outcome in FAILURES:
                        failures.append({"reader": reader, "mutation": mutation, "seed": seed,
                                         "outcome": outcome, "detail": detail})
                counts[reader][mutation] = dict(tally)
    totals = collections.Counter()
    for per_reader in counts.values():
        for tally in per_reader.values():
            totals.update(tally)
    result = {"benchmark": "fuzz", "seeds": args.seeds, "totals": {"tried": sum(totals.values()), **totals},
              "counts": counts, "failures": failures, "seconds": time.perf_counter() - started,
              "command": "python benchmarks/bench_fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info(1)}
    write_json_atomic(args.out, result)
    t = result["totals"]
    print(f"{t['tried']} inputs tried: {t.get('same', 0)} read as their clean file, {t.get('parsed', 0)} read, "
          f"{t.get('named', 0)} named errors, {t.get('crash', 0)} crashes, {t.get('partial', 0)} partial outputs; "
          f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
