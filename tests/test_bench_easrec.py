"""bench_easrec's --search-from: a finished search retrained under other retrain-only settings."""
import json

import pytest
import torch

from recarch.search.job import load_search_config, search

from benchmark_scripts import load
from test_search_job import DATA, TINY, needs_data


@needs_data
def test_a_finished_search_is_retrained_with_distillation_and_nothing_else_is_run_again(tmp_path):
    bench = load("bench_easrec")
    torch.set_num_threads(1)
    sets = TINY + ["data.dataset=ml-100k", "cost.enabled=false"]
    search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "plain", echo=False)
    distilled = load_search_config(sets=sets + ["distill.teacher=baseline"])
    bench.adopt_search(distilled, tmp_path / "plain", tmp_path / "distilled")
    copied = tmp_path / "distilled"
    assert not (copied / "retrain").exists() and (copied / "baseline" / "metrics.json").exists()
    assert "distill" in (copied / "config.yaml").read_text() and not (tmp_path / "distilled.partial").exists()
    search(distilled, data_dir=str(DATA), run_dir=copied, echo=False, resume=True)
    log = (copied / "log.txt").read_text()
    assert "kept the derived architecture" in log and log.count("phase 1/4") == 1  # the search's own log, copied
    assert f"distilled from {copied / 'baseline'}" in (copied / "retrain" / "log.txt").read_text()
    assert json.loads((copied / "arch.json").read_text()) == json.loads((tmp_path / "plain" / "arch.json").read_text())
    with pytest.raises(SystemExit, match="searched with other settings \\(retrain\\)"):
        bench.adopt_search(load_search_config(sets=sets + ["retrain.lr=0.01"]), tmp_path / "plain", tmp_path / "other")
    assert not (tmp_path / "other").exists()
