import math

import numpy as np
import pytest
import torch

from recarch.data.batching import TrainBatches
from recarch.data.sequences import SequenceDataset
from recarch.evaluation import Evaluator
from recarch.models import SeqModelConfig, build_model
from recarch.train import Trainer, TrainConfig, TrainingDiverged
from recarch.train.stopping import stopped_by


def cyclic_dataset(users=60, items=12, length=9, seed=0):
    """Each user walks the item cycle 1..items from a random start: the next item is learnable."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, items, users)
    seqs = (starts[:, None] + np.arange(length)[None, :]) % items + 1
    offsets = np.arange(users + 1) * length
    return SequenceDataset("cyclic", items, offsets, seqs.ravel().astype(np.int64),
                           np.array([str(u) for u in range(users)]),
                           np.array([""] + [str(i) for i in range(1, items + 1)]))


def make(tmp_path, epochs, regime="all_positions", lr=1e-2, loss="full_ce", negatives="batch", optimizer="adam",
         sparse_embeddings=False, **kw):
    data = cyclic_dataset()
    torch.manual_seed(0)
    model = build_model(SeqModelConfig(**{"max_len": 8, "hidden_size": 16, "inner_size": 32, "n_layers": 1,
                                          "n_heads": 2, **kw}), data.num_items)
    cfg = TrainConfig(regime=regime, batch_size=16, lr=lr, epochs=epochs, patience=0, seed=3, loss=loss,
                      num_negatives=6, negatives=negatives, optimizer=optimizer,
                      sparse_embeddings=sparse_embeddings, valid_protocol="full", progress=False)
    ev = Evaluator(data, 8, protocols=["full"], ks=[1, 10])
    batches = TrainBatches(data, 8, regime, cfg.batch_size, cfg.seed)
    return Trainer(model, batches, ev, cfg, tmp_path, log=lambda m: None), model, ev


@pytest.mark.parametrize("regime", ["all_positions", "last_position"])
@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_learns_a_deterministic_sequence(tmp_path, regime, attention):
    trainer, model, ev = make(tmp_path, epochs=20, regime=regime, attention=attention, dropout=0.0, attn_dropout=0.0)
    before = ev.evaluate(model, "test")["full"]["recall@1"]
    trainer.fit()
    trainer.load_best()
    after = ev.evaluate(model, "test")["full"]["recall@1"]
    assert before < 0.3 and after > 0.75


@pytest.mark.parametrize("regime", ["all_positions", "last_position"])
@pytest.mark.parametrize("negatives", ["batch", "sequence", "position"])
def test_sampled_softmax_learns_too(tmp_path, negatives, regime):
    trainer, model, ev = make(tmp_path, epochs=20, regime=regime, loss="sampled_softmax", negatives=negatives,
                              dropout=0.0, attn_dropout=0.0)
    trainer.fit()
    trainer.load_best()
    assert ev.evaluate(model, "test")["full"]["recall@1"] > 0.75


def test_resumed_run_equals_uninterrupted_bit_for_bit(tmp_path):
    full, model_full, _ = make(tmp_path / "a", epochs=4, loss="sampled_softmax")
    full.fit()
    part, _, _ = make(tmp_path / "b", epochs=2, loss="sampled_softmax")
    part.fit()
    torch.manual_seed(12345)  # a fresh process would start from other RNG states
    np.random.seed(5)
    resumed, model_resumed, _ = make(tmp_path / "b", epochs=4, loss="sampled_softmax")
    resumed.fit(resume=True)
    for (name, a), (_, b) in zip(model_full.state_dict().items(), model_resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert full.state["history"][-1]["loss"] == resumed.state["history"][-1]["loss"]


def test_non_finite_loss_stops_and_names_the_step(tmp_path):
    trainer, model, _ = make(tmp_path, epochs=1)
    with torch.no_grad():
        model.embedding.item.weight[3] = math.nan
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 0"):
        trainer.fit()


def test_a_non_finite_gradient_stops_before_the_weights_move(tmp_path):
    trainer, model, _ = make(tmp_path, epochs=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.embedding.item.weight.register_hook(lambda g: g * math.inf)  # a finite loss, a non-finite gradient
    with pytest.raises(TrainingDiverged, match=r"a gradient is non-finite at epoch 1, step 0"):
        trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_early_stopping_counts_patience(tmp_path):
    trainer, _, _ = make(tmp_path, epochs=50, lr=1e-9)
    trainer.cfg.patience = 2
    result = trainer.fit()
    assert result["epoch"] == result["best_epoch"] + 2


@pytest.mark.parametrize("embedding_decay", [None, 0.5])
def test_embedding_weight_decay_reaches_the_tables_only(embedding_decay):
    """A zero loss leaves only the decay term: Adam's first step moves a decayed weight by -lr·sign(w)."""
    from recarch.train.optimizers import OPTIMIZERS, decay_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 1))
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(lr=0.1, weight_decay=0.0, embedding_weight_decay=embedding_decay)
    opt = OPTIMIZERS["adam"](decay_groups(model, list(model.parameters()), cfg), lr=cfg.lr)
    (0.0 * sum(p.sum() for p in model.parameters())).backward()
    opt.step()
    table, weight, bias = model.parameters()
    expected = before[0] - 0.1 * before[0].sign() if embedding_decay else before[0]
    torch.testing.assert_close(table.detach(), expected)
    torch.testing.assert_close(weight.detach(), before[1])
    torch.testing.assert_close(bias.detach(), before[2])


def test_negative_weight_decay_is_refused():
    from recarch.config import ConfigError

    with pytest.raises(ConfigError, match="embedding_weight_decay"):
        TrainConfig(embedding_weight_decay=-1.0).validate()


def test_bf16_trains_the_encoder_in_bfloat16_and_keeps_fp32_weights(tmp_path):
    trainer, model, _ = make(tmp_path / "fp32", epochs=1)
    seq, target = next(iter(trainer.batches.epoch(1)))
    model.eval()  # no dropout: the two precisions see the same network
    exact = float(trainer.loss(seq, target).detach())
    trainer.cfg.precision = "bf16"
    low = trainer.loss(seq, target)
    assert low.dtype == torch.float32 and float(low.detach()) != exact  # computed differently ...
    assert float(low.detach()) == pytest.approx(exact, rel=0.02)  # ... to bfloat16's precision
    low.backward()
    assert all(p.dtype == torch.float32 and p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("negatives", ["batch", "sequence", "position"])
def test_a_row_wise_item_table_takes_the_dense_sgd_step_exactly(tmp_path, negatives):
    """train.sparse_embeddings on SASRec under sampled softmax: the item table's gradient holds only the
    rows read (inputs, targets, negatives), and plain SGD then steps exactly as with the dense table."""
    runs = []
    for sparse in (False, True):
        trainer, model, _ = make(tmp_path / str(sparse), epochs=2, loss="sampled_softmax", negatives=negatives,
                                 optimizer="sgd", sparse_embeddings=sparse, dropout=0.0, attn_dropout=0.0)
        trainer.fit()
        runs.append(model.state_dict())
    assert len(trainer.sparse_params) == 1 and trainer.sparse_params[0] is model.embedding.item.weight
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], msg=key)


@pytest.mark.parametrize("loss", ["full_ce", "sampled_softmax"])
def test_a_student_distilled_with_alpha_1_learns_only_what_its_teacher_knows(tmp_path, loss):
    """With α = 1 the targets are the teacher's softmax alone: a student of another width learns the
    cycle from a teacher that knows it, and learns nothing from an untrained teacher."""
    from recarch.train.distill import Distillation

    teacher, trained, ev = make(tmp_path / "teacher", epochs=20, dropout=0.0, attn_dropout=0.0)
    untrained = build_model(trained.config, trained.num_items)
    teacher.fit()
    teacher.load_best()
    assert ev.evaluate(trained, "test")["full"]["recall@1"] > 0.75
    for name, source, learns in [("good", trained, True), ("bad", untrained, False)]:
        student, model, _ = make(tmp_path / name, epochs=20, loss=loss, negatives="sequence", hidden_size=8,
                                 inner_size=8, dropout=0.0, attn_dropout=0.0)
        student.distill = Distillation(source, alpha=1.0)
        student.fit()
        student.load_best()
        assert (ev.evaluate(model, "test")["full"]["recall@1"] > 0.75) == learns, name


def test_a_training_still_improving_at_its_cap_is_capped():
    assert stopped_by(epochs_run=100, best_epoch=99, patience=3) == "cap"
    assert stopped_by(epochs_run=100, best_epoch=97, patience=3) == "patience"
    assert stopped_by(epochs_run=12, best_epoch=9, patience=3) == "patience"
    assert stopped_by(epochs_run=12, best_epoch=2, patience=0) == "cap"  # no patience: only the cap stops it
