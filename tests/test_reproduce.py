"""`recarch reproduce`: statistics, table rendering, and a real (tiny) Table V run that resumes from its cache."""
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from benchmark_scripts import load
from test_search_job import needs_data
from recarch.cli import main
from recarch.reproduce.stats import kendall_tau, mean_std, spearman_rho, student_t_two_sided, welch_t_test
from recarch.reproduce.tables import (PAPER, Result, accuracy_vs_flops, head_start_lines, off_front_line, pareto_methods,
                                      render_table3)

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TINY = ["model.max_len=10", "model.hidden_size=16", "model.inner_size=32", "model.n_layers=2", "model.n_heads=2",
        "train.epochs=1", "retrain.epochs=1", "train.progress=false", "retrain.progress=false",
        "space.attn_intensities=[0.0,0.5]", "space.ffn_intensities=[0.0,0.5]", "cost.memory=false",
        "eval.protocols=[pop100]"]


def test_student_t_tail_matches_tabulated_critical_values():
    # two-sided 5 % critical values: 12.706 (df 1), 2.228 (df 10), 1.960 (df ∞)
    for t, df in [(12.706, 1), (2.228, 10), (1.960, 1e7)]:
        assert student_t_two_sided(t, df) == pytest.approx(0.05, abs=2e-4)
    assert student_t_two_sided(0.0, 5) == pytest.approx(1.0)
    # Welch by hand: means 2.5 vs 4.5, variances 5/3 each, n 4 → t = −2/√(5/6) = −2.191, df 6, p = 0.0710
    test = welch_t_test([1, 2, 3, 4], [3, 4, 5, 6])
    assert test["t"] == pytest.approx(-2.1909, abs=1e-4) and test["df"] == pytest.approx(6.0)
    assert test["p"] == pytest.approx(0.0710, abs=1e-4)
    assert welch_t_test([1.0], [2.0, 3.0]) is None and mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))


def test_kendall_tau_counts_concordant_minus_discordant_pairs():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # pairs of [1, 2, 3] vs [1, 3, 2]: (1,2) +, (1,3) +, (2,3) − → 1/3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # a tie counts as neither: (1,2) tied in b, (1,3) +, (2,3) + → 2/3
    assert kendall_tau([1, 2, 3], [5, 5, 6]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same"):
        kendall_tau([1, 2], [1])


def test_spearman_rho_correlates_average_ranks():
    assert spearman_rho([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    # ranks [1, 2, 3] vs [1, 3, 2]: 1 − 6·Σd²/(n(n²−1)) = 1 − 6·2/24 = 0.5
    assert spearman_rho([0.1, 0.2, 0.3], [5, 9, 7]) == pytest.approx(0.5)
    # ties share ranks: b's ranks [1.5, 1.5, 3]; Pearson with [1, 2, 3] = 1.5 / √(2 · 1.5) = √3/2
    assert spearman_rho([1, 2, 3], [5, 5, 6]) == pytest.approx(3 ** 0.5 / 2)
    assert spearman_rho([1, 2, 3], [7, 7, 7]) == 0.0


def _row(ndcg):
    metrics = {"pop100": {"recall@10": ndcg + 0.2, "mrr@10": ndcg - 0.05, "ndcg@10": ndcg}}
    return {"valid": metrics, "test": metrics, "flops_per_sequence": 1e6}


def test_table3_marks_significance_and_shows_the_papers_numbers():
    rows = {"easrec": [_row(0.50), _row(0.51), _row(0.52)], "sasrec": [_row(0.40), _row(0.41), _row(0.40)],
            "darts": [_row(0.49), _row(0.52), _row(0.51)]}
    lines = render_table3(Result("table3", "ml-1m", rows))
    easrec, sasrec, darts = lines[2:5]
    assert "0.5100 ± 0.0100" in easrec and "0.6796 / 0.3991 / 0.4661" in easrec  # ours, then the paper's test row
    assert sasrec.rstrip(" |").endswith("*")  # 0.51 vs 0.403 over 3 seeds: p < 0.05
    assert not darts.rstrip(" |").endswith("*")
    assert PAPER["table3"]["gowalla"]["easrec"]["test"]["ndcg@10"] == 0.7317
    assert pareto_methods({"a": (1.0, 0.5), "b": (2.0, 0.4), "c": (3.0, 0.6)}) == ["a", "c"]


def test_a_method_off_the_front_is_told_who_beats_it():
    rows = {"easrec": [_row(0.50), _row(0.52)], "recnas": [_row(0.51), _row(0.52)], "sasrec": [_row(0.40), _row(0.41)]}
    rows["sasrec"] = [{**r, "flops_per_sequence": 5e6} for r in rows["sasrec"]]
    result = Result("table3", "ml-100k", rows)
    points = accuracy_vs_flops(result)
    assert points["sasrec"] == (5.0, pytest.approx(0.405)) and pareto_methods(points) == ["recnas"]
    line = off_front_line(result, points, "easrec")[0]
    assert "beaten by RecNAS + SASRec (1.00 vs 1.00 MFLOPs/seq, test NDCG@10 0.5150 vs 0.5100, p 0.71)" in line
    assert "SASRec (w/o" not in line  # SASRec is beaten, not a beater
    assert off_front_line(result, points, "recnas") == []


@needs_data
def test_a_search_that_derives_the_hand_sized_architecture_is_called_a_head_start():
    def row(ndcg, seed, layers):
        model = {"name": "sasrec", "attention": "softmax", "hidden_size": 64, "inner_size": 256, "n_layers": layers,
                 "gates": 0}
        return {**_row(ndcg), "seed": seed, "model": model}

    rows = {"darts": [row(0.44, 42, 2), row(0.45, 43, 1)], "sasrec": [row(0.43, 42, 2), row(0.42, 43, 2)]}
    lines = head_start_lines(Result("table3", "ml-1m", rows))
    assert lines[0] == ("DARTS + SASRec derived SASRec (w/o LinRec)'s own architecture (64 / 256 / 2) on seed(s) 42; "
                        "retrained from the supernet's weights it reaches test NDCG@10 0.4400, trained from scratch "
                        "0.4300: that difference is the head start alone.")
    assert head_start_lines(Result("table3", "ml-1m", rows), inherited=False)[0].endswith(
        "on seed(s) 42; both trained from scratch, they reach test NDCG@10 0.4400 and 0.4300.")
    rows["darts"][0]["model"] = {**rows["darts"][0]["model"], "gates": 2}  # EASRec's gates: not the same model
    assert head_start_lines(Result("table3", "ml-1m", rows)) == []


@needs_data
def test_table5_runs_every_gate_variant_and_resumes(tmp_path, capsys):
    preset = Path(__file__).resolve().parents[1] / "configs" / "easrec-quick.yaml"
    args = ["--data-dir", str(DATA), "reproduce", "table5", "--dataset", "ml-100k", "--config", str(preset),
            "--out-dir", str(tmp_path)] + [x for s in TINY for x in ("--set", s)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| 2 layers |" in out and "| 1 layer |" in out and "| No Gates |" in out
    result = json.loads((tmp_path / "table5-ml-100k.json").read_text())
    gates = {m: rows[0]["model"]["gates"] for m, rows in result["rows"].items()}
    assert gates == {"easrec": 2, "easrec-gates1": 1, "easrec-gates0": 0}
    assert (tmp_path / "table5-ml-100k.png").stat().st_size > 0
    runs = sorted(p.stat().st_mtime for p in (tmp_path / "runs").rglob("row.json"))
    assert len(runs) == 3
    assert main(args) == 0  # every row comes from the cache: nothing is retrained
    assert sorted(p.stat().st_mtime for p in (tmp_path / "runs").rglob("row.json")) == runs
    # Table IV's timing reloads every cached model and times it again in one process
    from recarch.reproduce.tables import retime

    cached = Result("table5", "ml-100k", result["rows"])
    retime(cached, tmp_path / "runs", str(DATA))
    assert all(rows[0]["inference_seconds_same_run"] > 0 for rows in cached.rows.values())
    # seeds filled side by side (another process, --first-seed 43) are assembled without retraining
    assert main(args + ["--first-seed", "43"]) == 0
    filled = sorted(p.stat().st_mtime for p in (tmp_path / "runs").rglob("row.json"))
    assert len(filled) == 6 and {p.parent.name for p in (tmp_path / "runs").rglob("row.json")} == {"seed42", "seed43"}
    assert main(args + ["--seeds", "2"]) == 0
    assert sorted(p.stat().st_mtime for p in (tmp_path / "runs").rglob("row.json")) == filled
    both = json.loads((tmp_path / "table5-ml-100k.json").read_text())
    assert [r["seed"] for r in both["rows"]["easrec"]] == [42, 43]


@pytest.mark.skipif(not (DATA / "gowalla-checkins").exists(), reason="gowalla-checkins not present")
def test_attribute_methods_are_left_out_only_where_the_data_has_no_attributes():
    from recarch.reproduce.methods import dataset_has_features, needs_features

    preset = [Path(__file__).resolve().parents[1] / "configs" / "easrec-quick.yaml"]
    assert [m for m in ("easrec", "sasrec", "fdsa", "sasrecf-linear") if needs_features(m)] == ["fdsa", "sasrecf-linear"]
    assert dataset_has_features("ml-100k", preset, TINY, str(DATA))
    assert not dataset_has_features("gowalla-checkins", preset, TINY, str(DATA))


def _tiny_args(tmp_path, table="table5"):
    preset = Path(__file__).resolve().parents[1] / "configs" / "easrec-quick.yaml"
    return ["--data-dir", str(DATA), "reproduce", table, "--dataset", "ml-100k", "--config", str(preset),
            "--out-dir", str(tmp_path)] + [x for s in TINY for x in ("--set", s)]


@needs_data
def test_only_fills_the_cache_for_its_methods_and_writes_no_table(tmp_path, capsys):
    assert main(_tiny_args(tmp_path) + ["--only", "sasrec"]) != 0
    assert "--only sasrec: not a method of table5 (its methods: easrec, easrec-gates1, easrec-gates0)" in capsys.readouterr().err
    assert main(_tiny_args(tmp_path) + ["--only", "easrec-gates0"]) == 0
    assert "run again without --only to write table5" in capsys.readouterr().out
    assert [p.parent.parent.name for p in (tmp_path / "runs").rglob("row.json")] == ["easrec-gates0"]
    assert not (tmp_path / "table5-ml-100k.md").exists()
    # --remeasure-cost measures the cached model again (a new cost.json) and keeps its accuracy
    row_path = next((tmp_path / "runs").rglob("row.json"))
    cost_path = row_path.parent / "run" / "retrain" / "cost.json"
    before, measured = json.loads(row_path.read_text()), cost_path.stat().st_mtime_ns
    assert main(_tiny_args(tmp_path) + ["--only", "easrec-gates0", "--remeasure-cost"]) == 0
    after = json.loads(row_path.read_text())
    assert cost_path.stat().st_mtime_ns > measured and after["test"] == before["test"]
    assert after["flops_per_sequence"] == before["flops_per_sequence"]  # same code, same count


@needs_data
def test_an_imported_benchmark_run_is_the_row_reproduce_would_train(tmp_path):
    """bench_easrec's search folder (with its SASRec baseline inside) imported into the cache gives the
    same rows as reproduce's own runs, and a folder run with another config is refused; a method whose
    config is a cached method's reuses that run."""
    from recarch.reproduce.methods import method_config, run_method, twin
    from recarch.search.job import search

    importer = load("import_easrec_runs")
    preset = [str(Path(__file__).resolve().parents[1] / "configs" / "easrec-quick.yaml")]
    cfg = method_config("easrec", "ml-100k", 42, preset, TINY)
    search(replace(cfg, baseline=True), str(DATA), tmp_path / "bench", echo=False)
    imported = importer.import_run(tmp_path / "bench", "ml-100k", preset, TINY, tmp_path / "imported")
    assert [r["method"] for r in imported] == ["easrec", "sasrec"]
    assert imported[1]["imported_from"] == str(tmp_path / "bench" / "baseline")
    for row in imported:
        own = run_method(row["method"], "ml-100k", 42, preset, TINY, str(DATA), tmp_path / "own")
        assert row["test"] == own["test"] and row["model"] == own["model"]
    # λ = 0.1 is the preset's own: Fig. 4's λ = 0.1 row is the cached easrec run, copied, not run again
    searched = json.loads((tmp_path / "own" / "ml-100k" / "easrec" / "seed42" / "row.json").read_text())
    lam = run_method("easrec-lam0.1", "ml-100k", 42, preset, TINY, str(DATA), tmp_path / "own")
    assert lam["same_run_as"] == "easrec" and lam["test"] == searched["test"]
    assert (tmp_path / "own" / "ml-100k" / "easrec-lam0.1" / "seed42" / "run" / "retrain" / "metrics.json").exists()
    assert twin("easrec-lam0.5", "ml-100k", 42, tmp_path / "own",
                method_config("easrec-lam0.5", "ml-100k", 42, preset, TINY)) is None
    with pytest.raises(ValueError, match="not the easrec run .* model.hidden_size: reproduce runs 32, the folder has 16"):
        importer.import_run(tmp_path / "bench", "ml-100k", preset, [*TINY, "model.hidden_size=32"], tmp_path / "other")
    assert not (tmp_path / "other").exists()


@needs_data
def test_runs_on_a_local_ray_cluster_equal_the_in_process_ones(tmp_path, capsys):
    """``reproduce --executor ray``: each (method, seed) a Ray task; the cached rows equal an in-process run's
    (one thread each, as a 1-CPU Ray task has)."""
    pytest.importorskip("ray")
    one_thread = ["--set", "train.threads=1", "--set", "retrain.threads=1", "--only", "easrec-gates0", "--seeds", "2"]
    rows = []
    for where, extra in (("here", []), ("ray", ["--executor", "ray"])):
        assert main(_tiny_args(tmp_path / where) + one_thread + extra) == 0
        rows.append({p.parent.name: json.loads(p.read_text())["test"] for p in (tmp_path / where / "runs").rglob("row.json")})
    assert sorted(rows[0]) == ["seed42", "seed43"] and rows[0] == rows[1]
