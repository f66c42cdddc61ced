"""Ingest speed and memory of a user's own click log (``data.table``), against pandas in the same run.

The log is built from real data: MovieLens-1M in SASRec's version (999,611 positive (user, item) pairs,
``<data root>/ml-1m``) joined with users.dat and movies.dat, plus one item drawn uniformly per
positive as a negative (seed 0): ``click,user_id,item_id,gender,age,occupation,zip,genre,year``,
2.0 M rows. ``--repeat R`` writes it R times over (rows repeat, so the vocabularies stay the same
size: the scaling is in rows alone). The file goes to a temporary folder and is deleted afterwards.

Each measurement runs in a fresh process and reports its wall time and peak memory, private (RssAnon)
and file-backed (RssFile), polled every 5 ms (see :func:`measure`); each job runs ``--trials`` times
(default 3) and keeps its fastest time and its largest memory, since the machine is shared:

* **recarch**: ``CTRDataConfig(table=...).load()`` on an empty cache: read, check every row, build the
  training vocabularies, split 8:1:1 and write the memory-mapped ``.npy`` cache;
* **pandas read_csv**: ``pd.read_csv(path, dtype=str, na_filter=False)``, parsing alone (a lower bound
  for any reader that checks each value);
* **recarch parquet** / **pandas read_parquet**: the same two on the same rows written as Parquet (the
  click an integer, every other column a string; row groups of 2^20 rows);
* **pandas encode**: read_csv, then ``pd.factorize`` per column (ids over all rows, no split): the
  smallest in-memory encoder;
* **recarch / pandas import only**: the interpreter with the imports alone, the floor under each side's
  figures.

Writes ``benchmarks/results/ingest-ml-1m-clicks[-TAG].json``; ``benchmarks/render_ctr.py`` renders it.
Example: ``python benchmarks/bench_ctr_ingest.py --repeats 1 4 --data-dir /work/shared/data``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from recarch.cost import machine_info
from recarch.io import write_json_atomic
from recarch.paths import data_root

HERE = Path(__file__).resolve().parent
COLUMNS = ["click", "user_id", "item_id", "gender", "age", "occupation", "zip", "genre", "year"]

# Each job prints one JSON line: {"seconds": ..., "rows": ...}; the parent adds the peak RSS.
JOBS = {
    "recarch": """
from recarch.config import from_dict
from recarch.ctr.datasets import CTRDataConfig
start = time.perf_counter()
data = from_dict(CTRDataConfig, {"table": {"path": PATH, "label": "click"}}).load(cache_dir=CACHE, progress=False)
rows = sum(len(getattr(data, s).label) for s in ("train", "valid", "test"))
seconds = time.perf_counter() - start
""",
    "recarch parquet": """
from recarch.config import from_dict
from recarch.ctr.datasets import CTRDataConfig
start = time.perf_counter()
data = from_dict(CTRDataConfig, {"table": {"path": PARQUET, "label": "click"}}).load(cache_dir=CACHE, progress=False)
rows = sum(len(getattr(data, s).label) for s in ("train", "valid", "test"))
seconds = time.perf_counter() - start
""",
    "pandas read_parquet": """
import pandas as pd
start = time.perf_counter()
rows = len(pd.read_parquet(PARQUET))
seconds = time.perf_counter() - start
""",
    "pandas read_csv": """
import pandas as pd
start = time.perf_counter()
rows = len(pd.read_csv(PATH, dtype=str, na_filter=False))
seconds = time.perf_counter() - start
""",
    "pandas encode": """
import numpy as np, pandas as pd
start = time.perf_counter()
df = pd.read_csv(PATH, dtype=str, na_filter=False)
ids = np.stack([pd.factorize(df[c])[0].astype(np.int32) for c in df.columns[1:]], axis=1)
label = df["click"].to_numpy(np.float32)
rows = len(ids)
seconds = time.perf_counter() - start
""",
    "recarch import only": """
import recarch.ctr.datasets
rows, seconds = 0, 0.0
""",
    "pandas import only": """
import numpy, pandas
rows, seconds = 0, 0.0
""",
}


def build_log(root: Path, out: Path, repeat: int) -> int:
    """The ml-1m click log (see the module docstring) written ``repeat`` times, as CSV to ``out`` and
    as Parquet (the click an integer, every other column a string) beside it; returns its rows."""
    d = root / "ml-1m"
    pairs = pd.read_csv(d / "ml-1m.sasrec.txt.gz", sep=" ", names=["user", "item"], dtype=str)
    to_user = pd.read_csv(d / "sas_to_original_users.txt", sep=" ", names=["user", "user_id"], dtype=str)
    to_item = pd.read_csv(d / "sas_to_original_items.txt", sep=" ", names=["item", "item_id"], dtype=str)
    users = pd.read_csv(d / "users.dat", sep="::", engine="python", dtype=str,
                        names=["user_id", "gender", "age", "occupation", "zip"])
    movies = pd.read_csv(d / "movies.dat", sep="::", engine="python", dtype=str, encoding="latin-1",
                         names=["item_id", "title", "genres"])
    movies["genre"] = movies["genres"].str.split("|").str[0]
    movies["year"] = movies["title"].str.extract(r"\((\d{4})\)\s*$", expand=False).fillna("")
    rng = np.random.default_rng(0)
    negatives = pairs.assign(item=rng.choice(to_item["item"].to_numpy(), len(pairs)))
    rows = pd.concat([pairs.assign(click=1), negatives.assign(click=0)], ignore_index=True)
    rows = rows.merge(to_user, on="user").merge(to_item, on="item")
    rows = rows.merge(users, on="user_id", how="left").merge(movies[["item_id", "genre", "year"]],
                                                             on="item_id", how="left")
    rows = rows.sample(frac=1.0, random_state=0)[COLUMNS]
    text = rows.to_csv(index=False)
    body = text.split("\n", 1)[1]
    with open(out, "w") as f:
        f.write(text)
        for _ in range(repeat - 1):
            f.write(body)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(rows.fillna("").astype({c: str for c in COLUMNS[1:]}), preserve_index=False)
    with pq.ParquetWriter(out.with_suffix(".parquet"), table.schema) as writer:
        for _ in range(repeat):
            writer.write_table(table, row_group_size=1 << 20)
    return len(rows) * repeat


POLL = """
import json, threading, time
PEAK = {"RssAnon": 0, "RssFile": 0}
def _poll():
    while True:
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in PEAK:
                PEAK[key] = max(PEAK[key], int(line.split()[1]))
        time.sleep(0.005)
threading.Thread(target=_poll, daemon=True).start()
"""
REPORT = """
time.sleep(0.05)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": int(hwm.split()[1]) / 1024,
                  "peak_private_mb": PEAK["RssAnon"] / 1024, "peak_file_mb": PEAK["RssFile"] / 1024}))
"""


def measure(job: str, path: Path, cache: Path) -> dict:
    """Run one job in a fresh process: its seconds, rows and memory in MB. ``peak_mb`` is the process's
    VmHWM (which starts afresh at exec, unlike ru_maxrss); a thread polling /proc/self/status every 5 ms
    splits it into private memory (RssAnon) and file-backed pages (RssFile: the page cache of memory-
    mapped files, which the kernel reclaims under pressure)."""
    code = (POLL + f"PATH, PARQUET, CACHE = {str(path)!r}, {str(path.with_suffix('.parquet'))!r}, {str(cache)!r}\n"
            + JOBS[job] + REPORT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(HERE.parent / "src")})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--trials", type=int, default=3, help="runs of each job: the fastest time, the largest memory")
    parser.add_argument("--tag", default="", help="names a variant: results go to ingest-ml-1m-clicks-TAG.json")
    args = parser.parse_args()
    out = HERE / "results" / f"ingest-ml-1m-clicks{'-' + args.tag if args.tag else ''}.json"
    root = data_root(args.data_dir)
    machine = machine_info(threads=1)  # the commit measured, before anything can change the tree
    runs = []
    for repeat in args.repeats:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ml-1m-clicks.csv"
            rows = build_log(root, path, repeat)
            size = path.stat().st_size
            for job in JOBS:
                cache = Path(tmp) / f"cache-{len(runs)}"
                trials = [measure(job, path, Path(f"{cache}-{t}")) for t in range(args.trials)]
                result = {**min(trials, key=lambda x: x["seconds"]),
                          **{k: max(x[k] for x in trials) for k in ("peak_mb", "peak_private_mb", "peak_file_mb")},
                          "trials": len(trials)}
                if not job.endswith("import only") and result["rows"] != rows:
                    raise RuntimeError(f"{job}: read {result['rows']} rows of {rows}")
                runs.append({"job": job, "repeat": repeat, "rows": rows, "file_mb": size / 2**20, **result})
                print(f"x{repeat} {job}: {result['seconds']:.1f} s, peak {result['peak_mb']:.0f} MB "
                      f"(private {result['peak_private_mb']:.0f})", flush=True)
    command = "python benchmarks/bench_ctr_ingest.py " + " ".join(sys.argv[1:])
    write_json_atomic(out, {"command": command, "machine": machine, "seed": 0, "tag": args.tag,
                            "columns": COLUMNS, "runs": runs})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
