"""bench_dropout.py: the swapped model is the same model, and a short run writes a result that renders."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark_scripts import load
from recarch.dropout import Dropout

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_with_dropout_swaps_every_dropout_and_keeps_the_weights():
    bench = load("bench_dropout")
    model = nn.Sequential(nn.Linear(4, 8), Dropout(0.3), nn.Sequential(nn.Linear(8, 2), Dropout(0.1)))
    swapped = bench.with_dropout(model, lambda p: nn.Dropout(p))
    kinds = [(type(m), m.p) for m in swapped.modules() if isinstance(m, (nn.Dropout, Dropout))]
    assert kinds == [(nn.Dropout, 0.3), (nn.Dropout, 0.1)]
    assert all(isinstance(m, Dropout) for m in (model[1], model[2][1]))  # the original is left alone
    x = torch.randn(5, 4)
    assert torch.equal(model.eval()(x), swapped.eval()(x))


def test_a_short_run_writes_both_variants_times_and_renders(tmp_path):
    bench = load("bench_dropout")
    bench.main(["--dataset", "frappe", "--models", "dlrm", "--rounds", "2", "--steps", "2",
                "--data-dir", str(DATA), "--out-dir", str(tmp_path)])
    r = json.loads((tmp_path / "dropout-frappe.json").read_text())
    step = r["training_steps"][0]
    assert step["model"] == "dlrm" and list(step["median_ms"]) == ["torch.nn.Dropout", "recarch Dropout"]
    assert all(len(t) == 2 for t in step["rounds_ms"].values())
    assert step["speedup"] == pytest.approx(step["median_ms"]["torch.nn.Dropout"] / step["median_ms"]["recarch Dropout"])
    lines = load("render_ctr").dropout_section(r)
    assert any(line.startswith("| dlrm training step") for line in lines)
