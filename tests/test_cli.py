"""End to end through the command line on the real ml-100k files."""
import json
import os
from pathlib import Path

import pytest
import yaml

from recarch.cli import main

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
SMALL = ["--set", "model.max_len=20", "--set", "model.hidden_size=16", "--set", "model.inner_size=32",
         "--set", "model.n_layers=1", "--set", "train.epochs=2", "--set", "train.progress=false",
         "--set", "cost.threads=1"]


@needs_data
def test_train_then_evaluate_writes_a_complete_run_folder(tmp_path, capsys):
    code = main(["--data-dir", str(DATA), "train", "--model", "sasrec", "--dataset", "ml-100k",
                 "--out-dir", str(tmp_path), *SMALL])
    assert code == 0
    (run_dir,) = list(tmp_path.iterdir())
    for name in ["config.yaml", "metrics.json", "cost.json", "history.json", "log.txt", "users.tsv", "items.tsv",
                 "checkpoints/best.pt", "checkpoints/last.pt"]:
        assert (run_dir / name).exists(), name
    assert not list(run_dir.glob("*.tmp")) and not (run_dir / "inference_inputs.npz").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"pop100", "uni100", "full"}
    assert metrics["test"]["num_users"] == 943
    cost = json.loads((run_dir / "cost.json").read_text())
    assert cost["flops_per_sequence"] > 0 and cost["memory"]["net_mb"] > 0
    capsys.readouterr()
    assert main(["--data-dir", str(DATA), "evaluate", str(run_dir), "--protocol", "uni100"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["uni100"] == pytest.approx(metrics["test"]["uni100"])


@needs_data
def test_resume_continues_a_run(tmp_path):
    assert main(["--data-dir", str(DATA), "train", "--dataset", "ml-100k", "--out-dir", str(tmp_path), *SMALL,
                 "--set", "cost.enabled=false"]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    assert main(["--data-dir", str(DATA), "train", "--resume", str(run_dir), "--set", "train.epochs=3"]) == 0
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_train_on_your_own_csv_log(tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["uid,iid,when"] + [f"u{u},{(s + t) % 15},2024-01-{1 + t:02d}T00:00:00" for u, s in
                               enumerate(rng.integers(0, 15, 40)) for t in range(8)]
    log = tmp_path / "clicks.csv"
    log.write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out-dir", str(tmp_path / "runs"), *SMALL, "--set", "data.table.path=clicks.csv",
                 "--set", "data.table.user=uid", "--set", "data.table.item=iid", "--set", "data.table.timestamp=when",
                 "--set", "data.table.timestamp_format=iso", "--set", "cost.enabled=false",
                 "--set", "eval.protocols=[full]", "--set", "train.valid_protocol=full"]) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert run_dir.name.startswith("sasrec-softmax-clicks-")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["table"]["path"] == str(log.resolve())  # absolute
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"]["users"] == 40 and metrics["dataset"]["items"] == 15
    # the log names the table, not the default dataset, in words rather than a dict
    assert "dataset clicks: 40 users, 15 items, 320 interactions, 8-8 per user (mean 8.0)" in (run_dir / "log.txt").read_text()


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "train", "--dataset", "ml-10k", "--out-dir", str(tmp_path)]) == 2
    assert "did you mean 'ml-100k'" in capsys.readouterr().err
    assert main(["train", "--set", "model.hiden_size=3", "--out-dir", str(tmp_path)]) == 2
    assert "did you mean 'hidden_size'" in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("sasrec", "fdsa", "sasrecf"))
    assert main(["--data-dir", "/nonexistent", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "ml-1m" in out and "data.table.path=FILE" in out  # and how to use your own log
    assert main(["--data-dir", "/nonexistent", "ctr", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "frappe" in out and "data.table.label=COLUMN" in out


@needs_data
@pytest.mark.parametrize("model", [["model.attention=linear"],
                                   ["model.layer=sasrec", "model.padding=visible", "model.positions=inverse"]])
def test_export_serves_the_models_top_k(tmp_path, model):
    """The traced program (padded, no packing) gives the eager model's top-k: LinRec, and the recipe's
    padding keys and inverse positions."""
    import torch

    from recarch import run
    from recarch.export import load_program

    sets = [arg for key in model for arg in ("--set", key)]
    assert main(["--data-dir", str(DATA), "train", "--dataset", "ml-100k", "--out-dir", str(tmp_path), *SMALL,
                 "--set", "train.epochs=1", "--set", "cost.enabled=false", *sets]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    assert main(["--data-dir", str(DATA), "export", str(run_dir), "--k", "7", "--onnx"]) == 0
    program = load_program(run_dir / "export").module()
    cfg, data, model = run.load_run(run_dir, str(DATA))
    seq = torch.from_numpy(run.make_evaluator(cfg, data).inputs("test")[:300])
    scores, items = program(seq)
    expected = model.score_last(seq)
    expected[:, 0] = float("-inf")
    # the items served hold the top 7 scores (two items within rounding of each other may swap places)
    assert items.shape == (300, 7) and torch.allclose(expected.gather(1, items), expected.topk(7).values, atol=1e-5)
    assert torch.allclose(scores, expected.topk(7).values, atol=1e-5)
    # the same in onnxruntime, from model.onnx
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(run_dir / "export" / "model.onnx"))
    onnx_scores, onnx_items = session.run(None, {session.get_inputs()[0].name: seq.numpy()})
    assert torch.allclose(expected.gather(1, torch.from_numpy(onnx_items)), expected.topk(7).values, atol=1e-5)
    assert abs(onnx_scores - scores.detach().numpy()).max() < 1e-5
