"""`recarch ihas` end to end on Frappe: every stage, the baselines, the budget, the exported ensemble and
its serving program, and resuming an interrupted run."""
import json
import os
from pathlib import Path

import pytest
import torch

from recarch.cli import main
from recarch.export import load_program
from recarch.ihas.job import evaluate_ihas, load_ihas_config, load_ihas_ensemble

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (DATA / "frappe" / "frappe.test.libfm").exists(), reason="frappe not present")

TINY = ["model.embed_dim=4", "model.mlp=[16]", "blocks=2", "search.epochs=2", "search.batch_size=4096",
        "retrain.epochs=1", "retrain.batch_size=4096", "cost.enabled=false", "kmeans_sample=5000",
        "gate.hash_buckets=32", "target=0.5", "reg_warmup_epochs=1", "reg_ramp_epochs=0.5", "budget=0.35"]


@pytest.mark.parametrize("tables,distill", [("per_group", 0.0), ("shared", 0.5)])
def test_cli_runs_all_stages_and_the_exported_ensemble_reloads(tmp_path, capsys, tables, distill):
    tiny = TINY + [f"tables={tables}", f"distill={distill}", "export_onnx=true"]
    args = ["--data-dir", str(DATA), "ihas", "--dataset", "frappe", "--backbone", "deepfm", "--clusters", "3",
            "--out-dir", str(tmp_path)]
    assert main(args + [x for s in tiny for x in ("--set", s)]) == 0
    out = capsys.readouterr().out
    assert "[stage 1/3]" in out and "[stage 2/3]" in out and "[stage 3/3]" in out and "iHAS summary" in out
    # the full model is trained before any retrained one (it is their teacher when distilling)
    assert out.index("[baseline] full dimensions") < out.index("[stage 2/3]")
    assert ("(the teacher, α = 0.5)" in out) == bool(distill)
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    methods = summary["methods"]
    assert set(methods) == {"ihas", "full", "autodim", "uniform"}
    for m in methods.values():
        assert 0.5 < m["test"]["auc"] <= 1 and m["embedding_params"] > 0 and m["flops_per_sample"] > 0
    groups = summary["clusters"]["groups"]
    assert sum(g["train_rows"] for g in groups) == 69265 and sum(g["test_rows"] for g in groups) == 8659
    ihas, shared = methods["ihas"], tables == "shared"
    if not shared:
        assert ihas["embedding_params"] == sum(ihas["group_embedding_params"]) + ihas["gate_embedding_params"]
    assert methods["full"]["embedding_params"] == 5 * sum(summary["vocab_sizes"])  # width 4 + first order
    # uniform: the widest even width within iHAS's per-instance parameters (shared tables: the ensemble's)
    width, vocab = methods["uniform"]["width"], sum(summary["vocab_sizes"])
    within = ihas["embedding_params" if shared else "embedding_params_per_instance"]
    assert methods["uniform"]["embedding_params"] == (width + 1) * vocab
    assert width == 1 or (width + 1) * vocab <= within < (width + 2) * vocab
    # the budget is a hard cap on the parameters per instance (groups weighted by their training rows),
    # with shared tables on the whole exported ensemble
    budget = summary["clusters"]["budget"]
    assert budget["limit"] == pytest.approx(0.35 * methods["full"]["embedding_params"])
    assert budget["before"] > budget["limit"] >= budget["after"] and budget["dropped_blocks"] > 0
    share = [g["train_rows"] / 69265 for g in groups]
    served = ihas["gate_embedding_params"] + sum(s * p for s, p in zip(share, ihas["group_embedding_params"]))
    assert (ihas["embedding_params"] if shared else served) == pytest.approx(budget["after"])
    assert methods["autodim"]["embedding_params"] <= budget["limit"]
    for name in ("config.yaml", "log.txt", "search/history.json", "cluster/clusters.json", "ensemble/ensemble.json"):
        assert (run_dir / name).exists()
    metrics = evaluate_ihas(run_dir, "test", str(DATA))
    assert metrics["auc"] == pytest.approx(ihas["test"]["auc"], abs=1e-9)
    assert metrics["logloss"] == pytest.approx(ihas["test"]["logloss"], abs=1e-9)
    # the run exported the ensemble as one serving program
    program = load_program(run_dir / "export").module()
    ensemble = load_ihas_ensemble(run_dir)
    data = load_ihas_config([run_dir / "config.yaml"]).data.load(str(DATA))
    cat, num = torch.tensor(data.test.cat[:3000]), torch.tensor(data.test.num[:3000])
    with torch.no_grad():
        assert torch.allclose(program(cat, num), torch.sigmoid(ensemble(cat, num)), atol=1e-6)
        expected = program(cat, num).numpy()
    ort = pytest.importorskip("onnxruntime")  # and from model.onnx in onnxruntime
    session = ort.InferenceSession(str(run_dir / "export" / "model.onnx"))
    (prob,) = session.run(None, dict(zip([i.name for i in session.get_inputs()], (cat.numpy(), num.numpy()))))
    assert abs(prob - expected).max() < 1e-5


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumed_ends_as_the_uninterrupted_one(tmp_path, monkeypatch, capsys):
    from recarch.ctr.run import CTRTrainer

    args = ["--data-dir", str(DATA), "ihas", "--dataset", "frappe", "--backbone", "deepfm", "--clusters", "3"]
    sets = [x for s in TINY + ["retrain.epochs=2", "retrain.patience=0"] for x in ("--set", s)]
    assert main(args + ["--out-dir", str(tmp_path / "whole")] + sets) == 0
    (whole,) = (tmp_path / "whole").iterdir()

    train_epoch = CTRTrainer.train_epoch

    def killed_in_the_autodim_baseline(self, epoch):  # its second epoch: every stage before it has finished
        if self.run_dir.name == "baseline-autodim" and epoch == 2:
            raise Interrupted
        return train_epoch(self, epoch)

    monkeypatch.setattr(CTRTrainer, "train_epoch", killed_in_the_autodim_baseline)
    with pytest.raises(Interrupted):
        main(args + ["--out-dir", str(tmp_path / "cut")] + sets)
    (cut,) = (tmp_path / "cut").iterdir()
    assert not (cut / "summary.json").exists()
    monkeypatch.setattr(CTRTrainer, "train_epoch", train_epoch)
    capsys.readouterr()
    # what the finished stages trained on may not change under them
    assert main(["--data-dir", str(DATA), "ihas", "--resume", str(cut), "--set", "distill=0.5"]) == 2
    assert "takes no --set" in capsys.readouterr().err
    assert main(["--data-dir", str(DATA), "ihas", "--resume", str(cut)]) == 0
    out = capsys.readouterr().out
    for folder in ("search", "baseline-full", "retrain/group-0", "baseline-autodim"):
        assert f"resumed after epoch {1 if folder == 'baseline-autodim' else 2} from {cut / folder}" in out
    a, b = (json.loads((run / "summary.json").read_text()) for run in (whole, cut))
    assert b["clusters"] == a["clusters"]
    for name in a["methods"]:
        assert b["methods"][name]["test"] == a["methods"][name]["test"], name
        assert b["methods"][name]["valid"] == a["methods"][name]["valid"], name


def test_group_models_on_a_local_ray_cluster_equal_the_in_process_ones(tmp_path, capsys):
    """``ihas --executor ray``: each group model a Ray task; the ensemble equals an in-process run's
    (one thread each, as a 1-CPU Ray task has). A search this short finds one group."""
    pytest.importorskip("ray")
    args = ["--data-dir", str(DATA), "ihas", "--dataset", "frappe", "--backbone", "deepfm", "--clusters", "3",
            *[x for s in TINY + ["baselines=false", "retrain.threads=1", "search.threads=1", "executor.num_cpus=2"]
              for x in ("--set", s)]]
    for where, extra in (("here", []), ("ray", ["--executor", "ray"])):
        assert main(args + ["--out-dir", str(tmp_path / where)] + extra) == 0
    (here,), (there,) = list((tmp_path / "here").iterdir()), list((tmp_path / "ray").iterdir())
    summaries = [json.loads((d / "summary.json").read_text()) for d in (here, there)]
    assert summaries[0]["methods"]["ihas"]["test"] == summaries[1]["methods"]["ihas"]["test"]
    assert "(scratch init, all data) as ray tasks" in (there / "log.txt").read_text()
