"""bench_sota.py keeps the seeds of an earlier result only when it was trained with the same recipe."""
from __future__ import annotations

import json
from pathlib import Path

from benchmark_scripts import load

bench = load("bench_sota")


def _result(path: Path, config: dict, seeds: list) -> None:
    path.write_text(json.dumps({"config": config, "machine": {"git_commit": "abc123"},
                                "ours": {"per_seed": [{"seed": s, "test_full_ndcg@10": 0.1 + s} for s in seeds]}}))


def test_earlier_seeds_kept_for_the_same_recipe_whatever_its_seed(tmp_path):
    config = {"model": {"hidden_size": 64}, "train": {"seed": 0, "lr": 0.001}}
    path = tmp_path / "sota-x.json"
    _result(path, config, [0, 1])
    rows = bench.earlier_rows(path, {"model": {"hidden_size": 64}, "train": {"seed": 2, "lr": 0.001}})
    assert sorted(rows) == [0, 1]
    assert rows[1] == {"seed": 1, "test_full_ndcg@10": 1.1, "git_commit": "abc123"}


def test_earlier_seeds_dropped_when_the_recipe_changed(tmp_path):
    path = tmp_path / "sota-x.json"
    _result(path, {"model": {"hidden_size": 64}, "train": {"seed": 0, "lr": 0.001}}, [0])
    assert bench.earlier_rows(path, {"model": {"hidden_size": 256}, "train": {"seed": 0, "lr": 0.001}}) == {}
    assert bench.earlier_rows(path, {"model": {"hidden_size": 64}, "train": {"seed": 0, "lr": 0.002}}) == {}
    assert bench.earlier_rows(tmp_path / "missing.json", {"train": {}}) == {}


def test_a_seed_folder_of_another_recipe_is_refused(tmp_path):
    import pytest
    import yaml
    from recarch import run

    files = bench.recipe_files("toys", "configs/sasrec-plus.yaml")
    cfg = bench.seed_config(files, "toys", 0, [])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(run.cfglib.to_dict(cfg)))
    bench.check_same_recipe(tmp_path, cfg)  # the same recipe: reused
    bench.check_same_recipe(tmp_path / "fresh", cfg)  # no folder yet: trained
    with pytest.raises(SystemExit, match="holds a run of another recipe"):
        bench.check_same_recipe(tmp_path, bench.seed_config(files, "toys", 0, ["model.item_dropout=0.0"]))


def test_a_seed_row_carries_the_runs_counted_inference_flops(tmp_path, monkeypatch):
    run = tmp_path / "seed0"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"test": {"full": {"ndcg@10": 0.2, "recall@10": 0.3}}, "best_epoch": 3,
                                                  "epochs_run": 5, "train_seconds": 10.0}))
    (run / "history.json").write_text(json.dumps([{"epoch": 1, "elapsed_s": 2.0, "seconds": 2.0, "sequences_per_s": 50.0,
                                                   "valid_seconds": 0.5, "valid_ndcg@10": 0.1}]))
    (run / "cost.json").write_text(json.dumps({"flops_per_sequence": 1234, "machine": {"git_commit": "abc"}}))
    monkeypatch.setattr(bench, "ROOT", tmp_path)  # run folders are named relative to the repository
    row = bench.seed_row(0, run, patience=2, metric="ndcg@10")
    assert row["inference_flops_per_sequence"] == 1234 and row["stopped_by"] == "patience" and row["git_commit"] == "abc"
    (run / "cost.json").unlink()
    assert bench.seed_row(0, run, patience=2, metric="ndcg@10")["inference_flops_per_sequence"] is None
