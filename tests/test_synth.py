"""benchmarks/synth.py: seeded synthetic logs that recarch's own readers take."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import synth  # noqa: E402

from recarch.ctr import readers as R  # noqa: E402


def test_hex8_writes_eight_digits():
    assert synth.hex8(np.array([0, 255, 0xDEADBEEF])).tolist() == ["00000000", "000000ff", "deadbeef"]


def test_sequential_log_has_zipf_items_geometric_lengths_and_time_order(tmp_path):
    path = tmp_path / "seq.csv"
    assert synth.main(["seq", str(path), "--users", "3000", "--items", "500", "--mean-length", "20"]) == 0
    df = pd.read_csv(path)
    lengths = df.groupby("user").size()
    assert len(lengths) == 3000 and lengths.min() >= 3 and 17 < lengths.mean() < 23
    counts = df["item"].value_counts()
    assert counts.iloc[0] > 20 * counts.iloc[-1]  # Zipf: the head dwarfs the tail
    assert (df.groupby("user")["timestamp"].diff().dropna() > 0).all()
    synth.main(["seq", str(tmp_path / "again.parquet"), "--users", "3000", "--items", "500", "--mean-length", "20"])
    assert pd.read_parquet(tmp_path / "again.parquet").equals(df)  # seeded, either format


def test_ctr_log_reads_as_criteo(tmp_path):
    path = tmp_path / "criteo" / "train.txt"
    assert synth.main(["ctr", str(path), "--rows", "3000", "--max-vocab", "100000"]) == 0
    assert not list(path.parent.glob("*.tmp"))
    rows = R.read_criteo(path)
    assert len(rows) == 3000 and 0.1 < rows.label.mean() < 0.4
    assert rows.num.shape == (3000, 13) and 0.05 < np.isnan(rows.num).mean() < 0.15
    assert rows.cat.shape == (3000, 26) and rows.cat["C1"].nunique() <= 10 < rows.cat["C26"].nunique()
