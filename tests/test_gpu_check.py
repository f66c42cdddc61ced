"""benchmarks/gpu_check.py's CPU fallback (what a GPU machine runs, on ml-100k with tiny settings)."""
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RECARCH_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "gpu-check.json"
    assert gpu_check.main(["--quick", "--device", "cpu", "--data-dir", str(DATA), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["steps"]) == {"train", "train wall s", "train-bf16", "train-bf16 wall s", "search wall s",
                                    "export wall s", "ddp wall s"}
    assert result["process_group"] == "gloo" and result["capped"]
    assert all(v > 0 for step in result["steps"].values() for v in step.values())
