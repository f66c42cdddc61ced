"""The CTR jobs end to end on Frappe: `recarch ctr train | evaluate | search`, resume, budget, export."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recarch.cli import main
from recarch.config import ConfigError
from recarch.ctr.run import load_ctr_run
from recarch.ctr.search import load_search_config

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "frappe" / "frappe.test.libfm").exists(), reason="frappe not present")
SMALL = ["--set", "model.embed_dim=4", "--set", "model.mlp=[16]", "--set", "train.epochs=2",
         "--set", "train.progress=false", "--set", "cost.threads=1", "--set", "train.batch_size=4096"]
TINY_SEARCH = ["--set", "space.blocks=2", "--set", "space.dense_dims=[8,16]", "--set", "space.sparse_dims=[4,8]",
               "--set", "train.epochs=1", "--set", "train.batch_size=2048", "--set", "train.progress=false",
               "--set", "evolution.population=6", "--set", "evolution.sample_size=3", "--set", "evolution.children=2",
               "--set", "evolution.generations=3", "--set", "top_k=1", "--set", "retrain.epochs=1",
               "--set", "retrain.batch_size=4096", "--set", "retrain.progress=false", "--set", "cost.threads=1",
               "--set", "train.optimizer=adagrad", "--set", "train.lr=0.05"]


def test_train_evaluate_and_resume(tmp_path, capsys):
    args = ["--data-dir", str(DATA), "ctr", "train", "--model", "dcnv2", "--dataset", "frappe", "--out-dir", str(tmp_path)]
    assert main(args + SMALL) == 0
    (run_dir,) = list(tmp_path.iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["rows"] == 8659 and 0.85 < metrics["test"]["auc"] <= 1.0
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["flops_per_sample"] > 0 and 0 < cost["embedding_params"] < cost["params"]
    capsys.readouterr()
    assert main(["--data-dir", str(DATA), "ctr", "evaluate", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == pytest.approx(metrics["test"]["auc"])

    # 1 epoch + resume to 2 epochs gives exactly the uninterrupted run
    other = tmp_path / "resumed"
    assert main(args[:-1] + [str(other)] + SMALL + ["--set", "train.epochs=1", "--set", "cost.enabled=false"]) == 0
    (resumed,) = list(other.iterdir())
    assert main(["--data-dir", str(DATA), "ctr", "train", "--resume", str(resumed), "--set", "train.epochs=2"]) == 0
    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_row_wise_embedding_updates_resume_exactly(tmp_path):
    args = ["--data-dir", str(DATA), "ctr", "train", "--model", "deepfm", "--dataset", "frappe", *SMALL,
            "--set", "train.sparse_embeddings=true", "--set", "cost.enabled=false"]
    assert main(args + ["--out-dir", str(tmp_path / "whole")]) == 0
    assert main(args + ["--out-dir", str(tmp_path / "cut"), "--set", "train.epochs=1"]) == 0
    (whole,), (cut,) = list((tmp_path / "whole").iterdir()), list((tmp_path / "cut").iterdir())
    assert main(["--data-dir", str(DATA), "ctr", "train", "--resume", str(cut), "--set", "train.epochs=2"]) == 0
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    assert len(a["optimizer"]["parts"]) == 2  # the dense Adam and the tables' SparseAdam
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_user_errors_name_the_problem(tmp_path, capsys):
    assert main(["--data-dir", str(DATA), "ctr", "train", "--dataset", "frapee", "--out-dir", str(tmp_path)]) == 2
    assert "did you mean 'frappe'" in capsys.readouterr().err
    assert main(["--data-dir", str(DATA), "ctr", "train", "--model", "nasrec", "--out-dir", str(tmp_path)]) == 2
    assert "arch_file" in capsys.readouterr().err


def test_search_exports_a_budgeted_model_and_both_modes(tmp_path, capsys, monkeypatch):
    from recarch.ctr.search import CandidateScorer
    from recarch.ctr.space import Arch

    evaluated, scored_model = [], CandidateScorer.scored_model
    monkeypatch.setattr(CandidateScorer, "scored_model", lambda self, arch: evaluated.append(arch.network_key())
                        or scored_model(self, arch))
    budget = 0.02  # MFLOPs per sample
    assert main(["--data-dir", str(DATA), "ctr", "search", "--dataset", "frappe", "--out-dir", str(tmp_path),
                 "--hardware", str(Path(__file__).resolve().parents[1] / "configs" / "pim.yaml"),
                 "--budget-mflops", str(budget), *TINY_SEARCH]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["modes"]) == {"arch", "codesign"}
    for mode in ("arch", "codesign"):
        history = json.loads((run_dir / f"evolution-{mode}.json").read_text())
        assert len(history) >= 6 + 3 * 2 - 6  # redraws outside the budget are not scored
        assert all(h["mflops"] <= budget for h in history)
        assert (run_dir / f"pareto-{mode}.png").stat().st_size > 0
        front = json.loads((run_dir / f"pareto-{mode}.json").read_text())["front"]
        assert front and all(set(f) >= {"valid_logloss", "mflops", "energy_mj", "pim_latency_ms"} for f in front)
        winner = summary["modes"][mode]["winner"]
        assert winner["flops_per_sample"] <= budget * 1e6
        exported = json.loads((run_dir / f"arch-{mode}.json").read_text())
        assert set(exported) >= {"space", "arch", "placement", "search"}
        # the exported architecture is the one that was scored (same FLOPs as recorded in the search)
        from recarch.ctr.run import load_data, CTRRunConfig
        from recarch.ctr.supernet import NASRecNet, load_arch
        from recarch.cost.flops import count_flops

        data = load_data(CTRRunConfig(), str(DATA))
        space, arch = load_arch(str(run_dir / f"arch-{mode}.json"))
        one = (torch.from_numpy(np.array(data.test.cat[:1])), torch.from_numpy(np.array(data.test.num[:1])))
        assert count_flops(NASRecNet(data.schema, space, arch), one)["flops"] / 1e6 == pytest.approx(exported["search"]["mflops"])
    # arch-only keeps dense operators on the host; the co-design search places operators too
    arch_hist = json.loads((run_dir / "evolution-arch.json").read_text())
    assert all(not any(p.startswith("block") for p in h["placement"]) for h in arch_hist)
    # each network is evaluated once, whichever mode drew it first: the modes share their measurements
    both = arch_hist + json.loads((run_dir / "evolution-codesign.json").read_text())
    assert sorted(evaluated) == sorted({Arch.from_dict(h["arch"]).network_key() for h in both})
    # the retrained winner is an ordinary run that reloads and evaluates
    cfg, data, model = load_ctr_run(run_dir / "retrain" / "arch-1-seed42", str(DATA))
    assert cfg.model.name == "nasrec"
    capsys.readouterr()
    assert main(["--data-dir", str(DATA), "ctr", "evaluate", str(run_dir / "retrain" / "arch-1-seed42")]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == pytest.approx(summary["modes"]["arch"]["winner"]["test"]["auc"])
    assert (run_dir / "latency-table.json").exists()
    assert load_search_config([run_dir / "config.yaml"]).budget_mflops == budget


def test_export_serves_the_same_probabilities(tmp_path):
    from recarch.export import load_program

    assert main(["--data-dir", str(DATA), "ctr", "train", "--model", "autoint", "--dataset", "frappe",
                 "--out-dir", str(tmp_path), *SMALL, "--set", "train.epochs=1", "--set", "cost.enabled=false"]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    assert main(["--data-dir", str(DATA), "ctr", "export", str(run_dir), "--onnx"]) == 0
    program = load_program(run_dir / "export").module()
    cfg, data, model = load_ctr_run(run_dir, str(DATA))
    cat, num = (torch.from_numpy(np.array(a[:500])) for a in (data.test.cat, data.test.num))
    assert torch.allclose(program(cat, num), torch.sigmoid(model(cat, num)), atol=1e-6)
    ort = pytest.importorskip("onnxruntime")  # and from model.onnx in onnxruntime
    session = ort.InferenceSession(str(run_dir / "export" / "model.onnx"))
    (prob,) = session.run(None, dict(zip([i.name for i in session.get_inputs()], (cat.numpy(), num.numpy()))))
    assert abs(prob - program(cat, num).detach().numpy()).max() < 1e-5
    from safetensors.torch import load_file

    assert set(load_file(run_dir / "export" / "model.safetensors")) == set(model.state_dict())


def test_the_winner_has_the_best_mean_validation_auc_over_its_retrain_seeds(tmp_path):
    from recarch.ctr.search import search_ctr

    pim = Path(__file__).resolve().parents[1] / "configs" / "pim.yaml"
    sets = [s for s in TINY_SEARCH if s != "--set"] + ["data.dataset=frappe", f"hardware={pim}", "evolution.generations=0",
                                                        "top_k=2", "retrain_seeds=2", "retrain.seed=7"]
    summary = search_ctr(load_search_config(sets=sets), str(DATA), tmp_path / "run", echo=False)
    top = summary["modes"]["arch"]["top"]
    assert len(top) == 2
    for candidate in top:
        runs = candidate["per_seed"]
        assert [r["seed"] for r in runs] == [7, 8]
        assert [Path(r["run_dir"]).name for r in runs] == [f"arch-{candidate['k']}-seed7", f"arch-{candidate['k']}-seed8"]
        stored = [json.loads((Path(r["run_dir"]) / "metrics.json").read_text()) for r in runs]
        assert stored[0]["valid"]["auc"] != stored[1]["valid"]["auc"]  # two seeds, two different models
        for split in ("valid", "test"):
            assert candidate[split]["auc"] == pytest.approx(np.mean([m[split]["auc"] for m in stored]))
    winner = summary["modes"]["arch"]["winner"]
    assert winner["valid"]["auc"] == max(c["valid"]["auc"] for c in top)  # arch mode: no hardware term
    codesign = summary["modes"]["codesign"]
    merit = [c["valid"]["auc"] - (c["search"]["score"] - c["search"]["valid_logloss"]) for c in codesign["top"]]
    assert codesign["winner"]["k"] == codesign["top"][int(np.argmax(merit))]["k"]
    assert json.loads((tmp_path / "run" / "arch-arch.json").read_text()) == json.loads(
        (tmp_path / "run" / winner["arch_file"]).read_text())
    # a widened search retrains only its new candidate; the finished runs are reused as they are
    stamps = {r["run_dir"]: (Path(r["run_dir"]) / "metrics.json").stat().st_mtime_ns for c in top for r in c["per_seed"]}
    wider = search_ctr(load_search_config(sets=sets[:-3] + ["top_k=3", "retrain_seeds=2", "retrain.seed=7", "reuse_supernet=true"]),
                       str(DATA), tmp_path / "run", echo=False)
    assert [c["arch_file"] for c in wider["modes"]["arch"]["top"][:2]] == [c["arch_file"] for c in top]
    assert all((Path(d) / "metrics.json").stat().st_mtime_ns == t for d, t in stamps.items())
    assert len(wider["modes"]["arch"]["top"]) == 3 and (tmp_path / "run" / "retrain" / "arch-3-seed8" / "metrics.json").exists()


def test_each_candidate_keeps_the_retrain_learning_rate_with_the_best_mean_validation_auc(tmp_path):
    from recarch.ctr.search import search_ctr

    sets = [s for s in TINY_SEARCH if s != "--set"] + ["data.dataset=frappe", "evolution.generations=0", "top_k=2",
                                                        "retrain_seeds=2", "retrain.seed=7", "retrain.lr=0.001",
                                                        "retrain_lrs=[0.001, 0.1]", "retrain_dropout=0.3"]
    summary = search_ctr(load_search_config(sets=sets), str(DATA), tmp_path / "run", echo=False)
    for candidate in summary["modes"]["arch"]["top"]:
        k = candidate["k"]
        means = {}
        for lr, tag in ((0.001, ""), (0.1, "-lr0.1")):
            dirs = [tmp_path / "run" / "retrain" / f"arch-{k}{tag}-seed{s}" for s in (7, 8)]
            configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in dirs]
            assert [c["train"]["lr"] for c in configs] == [lr, lr] and all(c["model"]["dropout"] == 0.3 for c in configs)
            means[lr] = np.mean([json.loads((d / "metrics.json").read_text())["valid"]["auc"] for d in dirs])
        assert candidate["lr_valid_auc"] == {"0.001": pytest.approx(means[0.001]), "0.1": pytest.approx(means[0.1])}
        assert means[0.001] != means[0.1]
        assert candidate["lr"] == max(means, key=means.get)
        assert candidate["valid"]["auc"] == pytest.approx(max(means.values()))
        assert {r["lr"] for r in candidate["per_seed"]} == {candidate["lr"]}
        assert all(("-lr0.1-" in r["run_dir"]) == (candidate["lr"] == 0.1) for r in candidate["per_seed"])
    with pytest.raises(ConfigError, match="retrain_dropout"):
        load_search_config(sets=["retrain_dropout=1.0"])

def test_search_can_reuse_its_trained_supernet(tmp_path):
    from recarch.ctr.search import search_ctr

    # with BatchNorm: each path's statistics are re-estimated on the same calibration rows every time
    sets = [s for s in TINY_SEARCH if s != "--set"] + ["data.dataset=frappe", "evolution.generations=0", "space.norm=batch"]
    cfg = load_search_config(sets=sets)
    first = search_ctr(cfg, str(DATA), tmp_path / "run", echo=False)
    stamp = (tmp_path / "run" / "supernet" / "checkpoints" / "best.pt").stat().st_mtime
    again = search_ctr(load_search_config(sets=sets + ["reuse_supernet=true"]), str(DATA), tmp_path / "run", echo=False)
    assert "reusing the trained weights" in (tmp_path / "run" / "log.txt").read_text()
    assert (tmp_path / "run" / "supernet" / "checkpoints" / "best.pt").stat().st_mtime == stamp
    assert again["supernet"] == first["supernet"]
    assert again["modes"]["arch"]["winner"]["search"]["valid_auc"] == first["modes"]["arch"]["winner"]["search"]["valid_auc"]
    # more epochs: the reused supernet trains on from where it stopped
    longer = search_ctr(load_search_config(sets=sets + ["reuse_supernet=true", f"train.epochs={first['supernet']['epochs'] + 1}"]),
                        str(DATA), tmp_path / "run", echo=False)
    assert longer["supernet"]["epochs"] == first["supernet"]["epochs"] + 1


def test_the_hand_sized_baseline_is_the_widest_mlp_within_the_flops_budget(monkeypatch):
    import argparse
    from dataclasses import replace

    from recarch.cost.flops import count_flops
    from recarch.ctr.models import build_ctr_model
    from recarch.ctr.run import load_ctr_config, load_data

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_ctr import hand_sized_mlp

    cfg = load_ctr_config([Path(__file__).resolve().parents[1] / "configs" / "ctr-baselines.yaml"], ["model.name=deepfm"])
    data = load_data(cfg, str(DATA))
    one = (torch.from_numpy(np.array(data.test.cat[:1])), torch.from_numpy(np.array(data.test.num[:1])))
    flops = count_flops(build_ctr_model(data.schema, replace(cfg.model, mlp=[64, 64, 64])).eval(), one)["flops"]
    args = argparse.Namespace(set=[], data_dir=str(DATA))
    assert hand_sized_mlp("frappe", "deepfm", flops / 1e6, args) == [64, 64, 64]
    assert hand_sized_mlp("frappe", "deepfm", (flops - 1) / 1e6, args) == [56, 56, 56]
    assert hand_sized_mlp("frappe", "deepfm", 1e-6, args) is None


@pytest.mark.parametrize("rule", ["single", "sandwich"])
def test_supernet_throughput_counts_the_flops_of_the_paths_it_trained_on(tmp_path, monkeypatch, rule):
    from recarch.ctr import hardware as hw
    from recarch.ctr.search import search_ctr
    from recarch.ctr.supernet_training import PathSampler, one_test_row
    from recarch.ctr.run import CTRRunConfig, load_data
    from recarch.ctr.supernet import NASRecSupernet

    drawn = []
    draw = PathSampler.paths
    monkeypatch.setattr(PathSampler, "paths", lambda self, step: drawn.append(draw(self, step)) or drawn[-1])
    sets = [s for s in TINY_SEARCH if s != "--set"] + ["data.dataset=frappe", "evolution.generations=0",
                                                        "largest_warmup_steps=5", f"supernet.rule={rule}"]
    cfg = load_search_config(sets=sets)
    supernet = search_ctr(cfg, str(DATA), tmp_path / "run", echo=False)["supernet"]
    data = load_data(CTRRunConfig(data=cfg.data), str(DATA))
    steps = -(-len(data.train) // cfg.train.batch_size) * supernet["epochs"]
    trained = drawn[:steps]  # the replay inside the search draws the same paths again after these
    assert [[a.to_dict() for a in archs] for archs in drawn[steps:2 * steps]] == [[a.to_dict() for a in archs] for archs in trained]
    assert {len(archs) for archs in trained} == {1 if rule == "single" else 3}
    net = NASRecSupernet(data.schema, cfg.space)  # FLOPs depend on the architecture, not on the weights
    plain = [sum(2 * sum(op.macs for op in hw.network_ops(net.extract(a), one_test_row(data))) for a in archs) / 1e6
             for archs in trained]
    assert supernet["mean_path_mflops"] == pytest.approx(np.mean(plain), rel=1e-9)
    assert supernet["train_gflops_per_s"] == pytest.approx(
        3 * supernet["mean_path_mflops"] * supernet["train_samples_per_s"] / 1e3, rel=1e-9)


def test_a_search_stopped_in_its_retrains_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    import recarch.ctr.retrain as retrain

    class Stopped(Exception):
        pass

    args = ["--data-dir", str(DATA), "ctr", "search", "--dataset", "frappe", *TINY_SEARCH, "--set", "top_k=2"]
    assert main(args + ["--out-dir", str(tmp_path / "whole")]) == 0
    real, calls = retrain.train_ctr, []

    def stopped_in_the_second_retrain(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise Stopped
        return real(*a, **k)

    monkeypatch.setattr(retrain, "train_ctr", stopped_in_the_second_retrain)
    with pytest.raises(Stopped):
        main(args + ["--out-dir", str(tmp_path / "cut")])
    monkeypatch.setattr(retrain, "train_ctr", real)
    (cut,) = list((tmp_path / "cut").iterdir())
    assert json.loads((cut / "status.json").read_text())["status"] == "failed"
    assert main(["--data-dir", str(DATA), "ctr", "search", "--resume", str(cut)]) == 0
    assert "kept the evolution (arch)" in (cut / "log.txt").read_text()
    (whole,) = list((tmp_path / "whole").iterdir())
    a, b = (json.loads((d / "summary.json").read_text())["modes"]["arch"] for d in (whole, cut))
    assert [t["test"] for t in a["top"]] == [t["test"] for t in b["top"]] and a["winner"]["arch_file"] == b["winner"]["arch_file"]


def test_search_retrains_on_a_local_ray_cluster_equal_the_in_process_ones(tmp_path):
    """``ctr search --executor ray``: every retrain (candidate × seed) a Ray task on a real local
    cluster; each candidate's retrained metrics equal an in-process search's (one thread each, as a
    1-CPU Ray task has)."""
    pytest.importorskip("ray")
    args = ["--data-dir", str(DATA), "ctr", "search", "--dataset", "frappe", *TINY_SEARCH, "--set", "top_k=2",
            "--set", "retrain_seeds=2", "--set", "retrain.threads=1"]
    assert main(args + ["--out-dir", str(tmp_path / "here")]) == 0
    assert main(args + ["--out-dir", str(tmp_path / "ray"), "--executor", "ray", "--set", "executor.num_cpus=2"]) == 0
    (here,), (there,) = list((tmp_path / "here").iterdir()), list((tmp_path / "ray").iterdir())
    tops = [json.loads((d / "summary.json").read_text())["modes"]["arch"]["top"] for d in (here, there)]
    assert len(tops[0]) == 2 and len(tops[0][0]["per_seed"]) == 2
    assert [[r["test"] for r in t["per_seed"]] for t in tops[0]] == [[r["test"] for r in t["per_seed"]] for t in tops[1]]
    assert "as ray tasks" in (there / "log.txt").read_text()


def test_an_interrupted_retrain_goes_on_from_its_checkpoint_and_another_architecture_starts_afresh(tmp_path):
    import random

    from recarch import config as cfglib
    from recarch.ctr.retrain import retrained
    from recarch.ctr.space import sample

    cfg = load_search_config(sets=[s for s in TINY_SEARCH if s != "--set"] + ["data.dataset=frappe", "retrain.epochs=2"])
    small, large = sample(cfg.space, random.Random(0), smallest=True), sample(cfg.space, random.Random(0), largest=True)
    files = {}
    for name, arch in (("small", small), ("large", large)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps({"space": cfglib.to_dict(cfg.space), "arch": arch.to_dict(), "placement": []}))

    def job(name, folder):
        return cfg, files[name], 1, 1e-3, str(DATA), tmp_path / folder, False

    whole = retrained(job("small", "whole"))
    retrained(job("small", "cut"))
    (tmp_path / "cut" / "metrics.json").unlink()  # as if stopped after its last checkpoint
    resumed = retrained(job("small", "cut"))
    assert "resumed after epoch 2" in (tmp_path / "cut" / "log.txt").read_text()
    assert resumed["test"] == whole["test"] and resumed["valid"] == whole["valid"]
    other = retrained(job("large", "cut"))  # the folder held another architecture: emptied, trained from scratch
    assert "resumed" not in (tmp_path / "cut" / "log.txt").read_text()
    assert other["flops_per_sample"] > whole["flops_per_sample"]
