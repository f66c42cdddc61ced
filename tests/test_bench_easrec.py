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


def test_seeds_of_an_elastic_search_are_summarised_and_rendered_with_their_architectures():
    bench, render = load("bench_easrec"), load("render")
    arch = {"width": 64, "item_width": 0, "max_len": 50, "layer": "sasrec",
            "layers": [{"attn": 64, "heads": 2, "ffn": 16}, {"attn": 64, "heads": 2, "ffn": 64}]}

    def run(seed, ours, base):
        row = {"pop100_ndcg@10": 0.4, "flops_per_sequence": 1.0, "inference_seconds": 1.0, "peak_memory_mb": 1.0,
               "train_seconds": 1.0, "stopped_by": "patience", "best_epoch": 3, "epochs_run": 5}
        summary = {"rows": [{**row, "model": "Elastic one-shot (≤ 40% FLOPs)", "full_ndcg@10": ours, "arch": arch,
                             "flops_per_sequence": 0.25},
                            {**row, "model": "SASRec (hand-sized)", "full_ndcg@10": base}], "search_seconds": 1.0}
        return {**summary, "seed": seed, "ratios": bench.ratios(summary)}

    summary = bench.seed_summary([run(0, 0.18, 0.2), run(1, 0.19, 0.2)])
    assert [s["arch"] for s in summary["per_seed"]] == [arch, arch]
    assert summary["ratios_mean_std"]["full_ndcg@10_relative"][0] == pytest.approx(-0.075)
    assert summary["ratios_mean_std"]["flops_fraction"][0] == pytest.approx(0.25)
    text = "\n".join(render.easrec_seeds(summary))
    assert "| 0 | width 64, N 50, sasrec, 2 layer(s)" in text and "full -7.5% ± 3.5%" in text
