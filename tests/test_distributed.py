"""A 2-process run (torchrun, gloo on CPU) equals a 1-process run with the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
# dropout off: each rank draws its own masks, the only thing that may differ from one process
COMMON = ["model.max_len=10", "model.hidden_size=16", "model.inner_size=32", "model.n_heads=2",
          "model.dropout=0.0", "model.attn_dropout=0.0", "cost.enabled=false"]


def launch(out: Path, nproc: int, command: list, sets: list) -> Path:
    args = [a for s in sets for a in ("--set", s)]
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(prefix + ["-m", "recarch.cli", "--data-dir", str(DATA), *command, "--out-dir", str(out), *args],
                   check=True, env=env, capture_output=True, timeout=300)
    (run_dir,) = list(out.iterdir())
    return run_dir


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


@needs_data
def test_two_process_training_matches_one_process(tmp_path):
    sets = COMMON + ["model.n_layers=1", "train.epochs=2", "train.batch_size=64", "train.progress=false"]
    one = launch(tmp_path / "one", 1, ["train", "--dataset", "ml-100k"], sets)
    two = launch(tmp_path / "two", 2, ["train", "--dataset", "ml-100k"], sets)
    assert_same(weights(one / "checkpoints" / "last.pt"), weights(two / "checkpoints" / "last.pt"))
    assert "2 process(es)" in (two / "log.txt").read_text()


@needs_data
def test_two_process_search_matches_one_process(tmp_path):
    sets = COMMON + ["data.dataset=ml-100k", "model.n_layers=2", "train.epochs=1", "retrain.epochs=1",
                     "train.batch_size=64", "train.progress=false", "retrain.progress=false", "baseline=false",
                     "space.attn_intensities=[0.0, 0.5]", "space.ffn_intensities=[0.0, 0.5]", "architect.arch_lr=0.05",
                     "architect.batch_size=64"]
    one = launch(tmp_path / "one", 1, ["search"], sets)
    two = launch(tmp_path / "two", 2, ["search"], sets)
    a, b = weights(one / "search" / "checkpoints" / "last.pt"), weights(two / "search" / "checkpoints" / "last.pt")
    assert not torch.equal(a["alpha"], torch.zeros_like(a["alpha"]))  # the controllers moved
    assert_same(a, b)
    arch = [json.loads((d / "arch.json").read_text()) for d in (one, two)]
    for a in arch:
        a.pop("search_seconds")
    assert arch[0]["candidate"] == arch[1]["candidate"] and arch[0]["depth"] == arch[1]["depth"]
    assert arch[0]["alpha_softmax"] == pytest.approx(arch[1]["alpha_softmax"], abs=1e-5)


FRAPPE = DATA / "frappe"


@pytest.mark.skipif(not FRAPPE.exists(), reason="frappe not present")
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "row-wise-embeddings"])
def test_two_process_ctr_training_matches_one_process(tmp_path, sparse):
    # no dropout and no batch norm: per-rank masks and per-shard batch statistics are what may differ;
    # plain SGD, whose step (unlike Adam's) would show a gradient summed twice or half-counted
    sets = ["model.dropout=0.0", "model.batch_norm=false", "model.mlp=[64, 64]", "model.embed_dim=8",
            "train.optimizer=sgd", "train.lr=0.5", "train.epochs=2", "train.batch_size=4096",
            "train.progress=false", "cost.enabled=false", f"train.sparse_embeddings={str(sparse).lower()}"]
    command = ["ctr", "train", "--model", "deepfm", "--dataset", "frappe"]
    one = launch(tmp_path / "one", 1, command, sets)
    two = launch(tmp_path / "two", 2, command, sets)
    a, b = weights(one / "checkpoints" / "last.pt"), weights(two / "checkpoints" / "last.pt")
    assert_same(a, b)
    assert "2 process(es)" in (two / "log.txt").read_text()
    losses = [[h["loss"] for h in json.loads((d / "history.json").read_text())] for d in (one, two)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and losses[0][1] < losses[0][0]
