"""EASRec's search job end to end on the real ml-100k, tiny settings."""
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from recarch.cli import main
from recarch.config import ConfigError
from recarch.search.derive import choose
from recarch.search.job import load_search_config, search

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
TINY = ["model.max_len=10", "model.hidden_size=16", "model.inner_size=32", "model.n_layers=2", "model.n_heads=2",
        "train.epochs=2", "retrain.epochs=1", "train.progress=false", "retrain.progress=false",
        "space.attn_intensities=[0.0, 0.5]", "space.ffn_intensities=[0.0, 0.5]", "cost.memory=false",
        "architect.arch_lr=0.05"]


@needs_data
def test_search_derives_retrains_and_summarises(tmp_path):
    torch.set_num_threads(1)
    cfg = load_search_config(sets=TINY + ["baseline=false", "data.dataset=ml-100k", "budget_ms=1000"])
    summary = search(cfg, data_dir=str(DATA), run_dir=tmp_path / "s", echo=False)
    run_dir = tmp_path / "s"
    arch = json.loads((run_dir / "arch.json").read_text())
    assert arch["model"]["hidden_size"] == arch["widths"][arch["candidate"]][0]
    assert 1 <= arch["depth"] <= 2 and arch["model"]["gates"] == 2
    assert len(arch["layer_ms"]) == 2 and arch["layer_ms"][arch["candidate"]] * arch["depth"] <= 1000
    trajectory = json.loads((run_dir / "search" / "trajectory.json").read_text())
    assert len(trajectory) == 2 and trajectory[0]["alpha_softmax"] != trajectory[1]["alpha_softmax"]
    assert (run_dir / "search" / "trajectory.png").exists()
    assert summary["rows"][0]["pop100_ndcg@10"] > 0
    assert summary["rows"][0]["stopped_by"] == "cap"  # 1 epoch, still improving: not evidence of convergence
    # the derived architecture retrains from the command line, from its inherited weights
    out = tmp_path / "retrain"
    assert main(["--data-dir", str(DATA), "retrain", str(run_dir / "arch.json"), "--out-dir", str(out),
                 "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "cost.enabled=false"]) == 0
    (retrained,) = list(out.iterdir())
    assert "initial weights from" in (retrained / "log.txt").read_text()


def test_budget_picks_the_most_probable_architecture_that_fits():
    alpha = torch.tensor([2.0, 1.0, 0.0])  # prefers the widest candidate
    beta = torch.tensor([0.0, 1.0])  # prefers depth 2
    flops = [100, 40, 10]
    assert choose(alpha, beta, flops, None) == (0, 2)
    assert choose(alpha, beta, flops, 80) == (1, 2)  # 2 layers of 40
    assert choose(alpha, beta, flops, 20) == (2, 2)
    assert choose(alpha, beta, flops, 10) == (2, 1)
    with pytest.raises(ValueError, match="no architecture in the search space fits"):
        choose(alpha, beta, flops, 5)


def test_candidate_latency_is_measured_and_ordered():
    from recarch.models import SeqModelConfig
    from recarch.search import EASRecSupernet, SearchSpaceConfig
    from recarch.search.constraint import candidate_layer_latency

    net = EASRecSupernet(50, SeqModelConfig(max_len=50, hidden_size=128, inner_size=512, n_heads=4),
                         SearchSpaceConfig(attn_intensities=[0.0, 0.75], ffn_intensities=[0.0, 0.75]))
    ms = candidate_layer_latency(net, 50, batch_size=64, repeats=3)
    assert len(ms) == 2 and all(t > 0 for t in ms) and ms[1] < ms[0]


@needs_data
def test_darts_strategy_runs_the_same_job_without_gates(tmp_path):
    torch.set_num_threads(1)
    cfg = load_search_config(sets=TINY + ["baseline=false", "data.dataset=ml-100k", "strategy=darts",
                                          "train.epochs=1"])
    search(cfg, data_dir=str(DATA), run_dir=tmp_path, echo=False)
    arch = json.loads((tmp_path / "arch.json").read_text())
    assert arch["strategy"] == "darts" and arch["model"]["gates"] == 0
    assert json.loads((tmp_path / "summary.json").read_text())["rows"][0]["model"] == "DARTS (derived)"


def test_trajectory_plot_labels_candidates_by_their_widths(tmp_path, monkeypatch):
    import matplotlib.figure

    from recarch.search.job import plot_trajectory

    legends = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: legends.extend(t.get_text() for ax in fig.axes
                                                            for t in ax.get_legend().get_texts()))
    history = [{"epoch": e, "alpha_softmax": [0.5, 0.3, 0.2], "beta_softmax": [0.6, 0.4], "resource": 1.0}
               for e in (1, 2)]
    assert plot_trajectory(history, tmp_path / "t.png", [(64, 256), (32, 128), (16, 64)])
    assert legends[:3] == ["width 64, FFN 256", "width 32, FFN 128", "width 16, FFN 64"]


@needs_data
def test_a_search_killed_in_each_phase_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Killed in the supernet's second epoch, then in the baseline's, then in the retrain's:
    ``recarch search --resume`` keeps what finished and ends with the same architecture, controllers and
    test scores as a run never stopped."""
    from recarch.train import Trainer

    torch.set_num_threads(1)
    sets = TINY + ["data.dataset=ml-100k", "retrain.epochs=2", "cost.enabled=false"]
    whole = search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "whole", echo=False)
    epoch = Trainer.train_epoch
    for phase in ("search", "baseline", "retrain"):
        def killed(self, n, phase=phase):
            if n == 2 and self.run_dir.name == phase:
                raise KeyboardInterrupt
            return epoch(self, n)

        monkeypatch.setattr(Trainer, "train_epoch", killed)
        with pytest.raises(KeyboardInterrupt):
            if phase == "search":
                search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "cut", echo=False)
            else:
                main(["--data-dir", str(DATA), "search", "--resume", str(tmp_path / "cut")])
        monkeypatch.setattr(Trainer, "train_epoch", epoch)
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert main(["--data-dir", str(DATA), "search", "--resume", str(tmp_path / "cut")]) == 0
    resumed = json.loads((tmp_path / "cut" / "summary.json").read_text())
    arch = [json.loads((tmp_path / d / "arch.json").read_text()) for d in ("whole", "cut")]
    assert arch[0]["alpha_softmax"] == arch[1]["alpha_softmax"] and arch[0]["model"] == arch[1]["model"]
    for a, b in zip(whole["rows"], resumed["rows"]):
        assert (a["model"], a["full_ndcg@10"], a["pop100_ndcg@10"]) == (b["model"], b["full_ndcg@10"], b["pop100_ndcg@10"])
    for log in ("log.txt", "retrain/log.txt", "baseline/log.txt"):  # each once: a finished phase is kept
        assert (tmp_path / "cut" / log).read_text().count("resumed after epoch") == 1


@needs_data
def test_the_baseline_can_be_a_finished_run_of_the_same_settings(tmp_path):
    """``baseline_run``: the hand-sized model's finished run is adopted (its scores kept, its cost measured
    again) instead of trained again; one trained with other settings is refused before the search starts."""
    torch.set_num_threads(1)
    sets = TINY + ["data.dataset=ml-100k", "cost.memory=false"]
    first = search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "a", echo=False)
    again = search(load_search_config(sets=sets + [f"baseline_run={tmp_path / 'a' / 'baseline'}"]),
                   data_dir=str(DATA), run_dir=tmp_path / "b", echo=False)
    assert first["rows"][1]["full_ndcg@10"] == again["rows"][1]["full_ndcg@10"]
    assert first["rows"][1]["flops_per_sequence"] == again["rows"][1]["flops_per_sequence"]
    assert (tmp_path / "b" / "baseline" / "cost.json").exists() and not (tmp_path / "b" / "baseline.partial").exists()
    assert "baseline: the finished run" in (tmp_path / "b" / "log.txt").read_text()
    saved = tmp_path / "a" / "baseline" / "config.yaml"  # a run trained before train.precision existed
    older = yaml.safe_load(saved.read_text())
    del older["train"]["precision"]
    saved.write_text(yaml.safe_dump(older))
    search(load_search_config(sets=sets + [f"baseline_run={tmp_path / 'a' / 'baseline'}"]),
           data_dir=str(DATA), run_dir=tmp_path / "d", echo=False)
    with pytest.raises(ConfigError, match="other settings.*train.lr"):
        search(load_search_config(sets=sets + ["retrain.lr=0.01", f"baseline_run={tmp_path / 'a' / 'baseline'}"]),
               data_dir=str(DATA), run_dir=tmp_path / "c", echo=False)
    assert not (tmp_path / "c").exists()


@needs_data
def test_the_derived_model_can_learn_from_the_hand_sized_one(tmp_path):
    """``distill.teacher: baseline``: the baseline trains first and the derived model's retrain distils
    from its folder; without a baseline there is no teacher, which the config refuses."""
    torch.set_num_threads(1)
    sets = TINY + ["data.dataset=ml-100k", "cost.enabled=false", "distill.teacher=baseline", "distill.alpha=0.3"]
    search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "s", echo=False)
    assert f"distilled from {tmp_path / 's' / 'baseline'} (α = 0.3)" in (tmp_path / "s" / "retrain" / "log.txt").read_text()
    assert "distilled" not in (tmp_path / "s" / "baseline" / "log.txt").read_text()
    with pytest.raises(ConfigError, match="distill.teacher: baseline needs the hand-sized model"):
        load_search_config(sets=sets + ["baseline=false"])


@needs_data
def test_warmup_epochs_train_the_weights_before_the_controllers_move(tmp_path):
    torch.set_num_threads(1)
    cfg = load_search_config(sets=TINY + ["baseline=false", "data.dataset=ml-100k", "train.epochs=3",
                                          "architect.warmup_epochs=2", "cost.enabled=false"])
    search(cfg, data_dir=str(DATA), run_dir=tmp_path / "s", echo=False)
    alpha = [h["alpha_softmax"] for h in json.loads((tmp_path / "s" / "search" / "trajectory.json").read_text())]
    assert alpha[0] == alpha[1] == [0.5, 0.5] and alpha[2] != alpha[1]


@needs_data
@pytest.mark.parametrize("trials", [2, 10])
def test_random_search_trains_each_drawn_architecture_and_retrains_the_best(tmp_path, trials):
    sets = TINY + ["baseline=false", "data.dataset=ml-100k", "strategy=random", f"random.trials={trials}",
                   "random.epochs=1", "budget_flops=0.6"]
    summary = search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "s", echo=False)
    arch = json.loads((tmp_path / "s" / "arch.json").read_text())
    flops = arch["layer_flops"]
    within = [(k, d) for k in range(2) for d in (1, 2) if flops[k] * d <= 0.6 * 2 * max(flops)]
    drawn = [(t["candidate"], t["depth"]) for t in arch["trials"]]
    assert len(drawn) == min(trials, len(within)) and set(drawn) <= set(within)  # 10 ≥ the space: the grid
    assert len(list((tmp_path / "s" / "trials").iterdir())) == len(drawn)
    best = max(arch["trials"], key=lambda t: t["valid"])
    assert (arch["candidate"], arch["depth"]) == (best["candidate"], best["depth"])
    assert summary["rows"][0]["model"] == "Random search (derived)" and not (tmp_path / "s" / "search").exists()
    with pytest.raises(ConfigError, match="needs a supernet"):
        load_search_config(sets=["strategy=random", "budgets=[0.5]"]).validate()


@needs_data
def test_random_search_trials_on_a_local_ray_cluster_equal_the_in_process_ones(tmp_path):
    """``--executor ray``: each trial a Ray task on a real local cluster (2 CPUs); every trial's result
    and the retrained winner equal an in-process run's."""
    pytest.importorskip("ray")
    sets = TINY + ["baseline=false", "data.dataset=ml-100k", "strategy=random", "random.trials=2",
                   "random.epochs=1", "retrain.threads=1", "cost.enabled=false"]
    here = search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "here", echo=False)
    there = search(load_search_config(sets=sets + ["executor.kind=ray", "executor.num_cpus=2"]), data_dir=str(DATA),
                   run_dir=tmp_path / "ray", echo=False)
    trials = [json.loads((tmp_path / run / "arch.json").read_text())["trials"] for run in ("here", "ray")]
    assert [(t["name"], t["valid"]) for t in trials[0]] == [(t["name"], t["valid"]) for t in trials[1]]
    assert here["rows"][0]["full_ndcg@10"] == there["rows"][0]["full_ndcg@10"]
    assert "trials run as ray tasks" in (tmp_path / "ray" / "log.txt").read_text()


def test_asking_for_ray_without_it_is_a_config_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install 'recarch\\[ray\\]'"):
        load_search_config(sets=["executor.kind=ray"])
