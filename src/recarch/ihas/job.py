"""``recarch ihas``: search → cluster → retrain, beside the two baselines, in one run folder.

Run folder: ``config.yaml``, ``log.txt``, ``search/`` (checkpoints, history.json), ``cluster/clusters.json``,
``retrain/group-<g>/`` (one CTR training per group), ``ensemble/`` (ensemble.pt + ensemble.json: the
model, reloaded by :func:`load_ihas_ensemble`), ``export/`` (the same as one ``torch.export`` serving
program, ``program.pt2``, with ``model.safetensors`` and ``config.json``), ``baseline-full/``,
``baseline-autodim/``, ``baseline-uniform/``, ``summary.json``.

Choices the paper leaves open (see also the docstrings of gates, embedding, search and cluster):
* Retraining (``retrain_init`` / ``retrain_data``, default ``scratch`` / ``all``): each group's backbone is
  trained from scratch with its group's per-field dimensions on all the training data, early-stopped on
  all the validation data; the group it serves is decided by the router. Measured on Frappe / DeepFM
  (one search, seed 42, 2 groups of 96 % / 4 %): test AUC 0.9498 this way against 0.9447 when each
  group starts from the search model (dense weights plus the kept columns of its tables) and is
  fine-tuned on its own instances — on data this small the search backbone has already overfit when
  the search ends (Frappe's full model peaks after ~5 epochs) and a small group starves on its own
  rows. ``search`` / ``group`` remain selectable. With ``all``, groups that would retrain the very same
  model (equal dimensions from scratch, equal blocks when warm-started) are merged first.
* Tables (``tables``, default ``per_group``): with ``per_group`` every group model has its own tables, so
  the exported ensemble holds Σ_g of them. With ``shared`` (scratch init only) the groups share nested
  tables, each field's as wide as its widest group and a group reading its first d_f columns, and
  DeepFM's first-order table is one for all; the group models are then trained together: with
  ``retrain_data: all`` every group model scores every training row and the loss is the mean of theirs,
  with ``group`` each row trains the model it is routed to; early stopping follows the routed ensemble's
  validation metric. ``budget`` then caps the whole ensemble rather than the parameters per instance
  (``budget.fit_shared_budget``), and the uniform baseline's width is the widest within the ensemble's.
* The AutoDim-like baseline keeps, per field, the blocks whose mean σ(logit) over the training
  instances exceeds 0.5, shared by all instances, and is retrained like a group (same init policy) on
  all the training data.
* ``budget`` (optional) makes a memory budget a hard cap: the regulariser's ``target`` is soft, and the
  groups' majority vote can keep more blocks than any one member, so after clustering kept blocks are
  dropped, fewest member votes per parameter first (``budget.fit_budget``), until the embedding
  parameters per instance (the gate embedding plus the serving group's tables, groups weighted by their
  share of the training rows) are within ``budget`` × the full model's. The AutoDim-like baseline gets
  the same cap (its votes: the mean gate probabilities).
* The full-dimension baseline is the backbone trained from scratch with the ``retrain`` settings.
* ``distill`` (α, default 0: the paper's hard labels) is our addition: the group models and the
  AutoDim-like and uniform baselines alike are retrained against (1 − α)·y + α·σ(z_full), the full-dimension
  model's soft labels (``retrain.distilled``); the full model is then trained first, as their teacher.
* The uniform baseline gives every field the same width, the widest whose embedding parameters fit within
  iHAS's per-instance figure, and is retrained like a group: does the search beat shrinking evenly?
* Embedding parameters (nn.Embedding weights, as ``ctr.run.embedding_parameters`` counts them; DeepFM's
  first-order table included for every model): the ensemble total is every group's tables plus the gate
  network's own embedding; the per-instance figure is, averaged over the test instances, the gate
  embedding plus the tables of the group model that serves the instance.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml
from torch import nn

from recarch import config as cfglib
from recarch.cost.flops import count_flops
from recarch.ctr.models import CTRModelConfig, build_ctr_model
from recarch.ctr.run import CTREvaluator, CTRTrainer, ctr_cost, embedding_parameters
from recarch.ctr.table import CTRData, CTRTable, batches
from recarch.executor import make_executor
from recarch.io import write_json_atomic
from recarch.ihas.budget import Budget, fit_budget
from recarch.ihas.cluster import cluster, group_dims, group_votes, merge_identical
from recarch.ihas.config import IHASConfig, load_ihas_config  # noqa: F401  (the job's config)
from recarch.ihas.embedding import field_columns
from recarch.ihas.ensemble import IHASEnsemble
from recarch.ihas.retrain import GroupsTrainer, distilled, evaluate_both, fit_model, group_job, mixed_model, subset
from recarch.ihas.search import field_weights, gate_outputs, masked_tokens, pattern_summary, run_search
from recarch.run import RunLog, unique_run_dir
from recarch.run_status import open_run, recorded


# ---- helpers -------------------------------------------------------------------------------------
def measure(model: nn.Module, data: CTRData, cfg: IHASConfig, flops: Optional[float] = None) -> Dict[str, Any]:
    """Parameters, embedding parameters, FLOPs per sample and (cost.enabled) CPU inference time."""
    cat, num, _ = next(batches(data.test, 1))
    out = {"params": sum(p.numel() for p in model.parameters()), "embedding_params": embedding_parameters(model),
           "flops_per_sample": flops if flops is not None else count_flops(model.eval(), (cat, num))["flops"]}
    if cfg.cost.enabled:
        report = ctr_cost(model, data, cfg.cost)
        out["inference_us_per_sample"] = report["inference"]["us_per_sample"]
    return out


def uniform_width(schema, model_cfg: CTRModelConfig, budget: float) -> int:
    """The widest embedding width d ≤ the full width at which the backbone, every field d wide, has at most
    ``budget`` embedding parameters (1 when even that exceeds it)."""
    rows = sum(schema.vocab_sizes)
    other = embedding_parameters(build_ctr_model(schema, model_cfg)) - rows * model_cfg.embed_dim  # e.g. FM's first order
    return max((w for w in range(1, model_cfg.embed_dim + 1) if other + rows * w <= budget), default=1)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def routed_rows(ensemble: IHASEnsemble, table: CTRTable, batch_size: int) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([ensemble.route(c, n) for c, n, _ in batches(table, batch_size)]).numpy()


# ---- the job -------------------------------------------------------------------------------------
def run_ihas(cfg: IHASConfig, data_dir: Optional[str] = None, run_dir: Optional[Path] = None, echo: bool = True,
             data: Optional[CTRData] = None, resume: bool = False) -> Dict[str, Any]:
    """The whole job in ``run_dir``. ``resume``: every training goes on from its last checkpoint in the
    folder (a finished one is reloaded, one not yet begun starts); each stage draws from its own seed, so
    a resumed run ends as the uninterrupted one would."""
    cfg.validate()
    start, loaded_here = time.perf_counter(), data is None
    if data is None:
        data = cfg.data.load(data_dir)
    loaded = time.perf_counter() - start
    run_dir = open_run(Path(run_dir or unique_run_dir(cfg.out_dir, f"ihas-{cfg.model.name}-{cfg.data.name}")),
                       cfglib.to_dict(cfg))  # made only now that the inputs are valid
    log = RunLog(run_dir / "log.txt", echo)
    if loaded_here:
        log(f"dataset {data.name}: {len(data.train):,} / {len(data.valid):,} / {len(data.test):,} rows, "
            f"{data.schema.num_fields} fields (loaded in {loaded:.1f}s); run folder {run_dir}")
    if cfg.search.threads:
        torch.set_num_threads(cfg.search.threads)
    with recorded(run_dir):
        return _run_ihas(cfg, data, run_dir, log, resume)


def _run_ihas(cfg: IHASConfig, data: CTRData, run_dir: Path, log: RunLog, resume: bool) -> Dict[str, Any]:
    """run_ihas()'s stages once its run folder exists."""
    timings: Dict[str, float] = {}
    schema, block = data.schema, cfg.model.embed_dim // cfg.blocks
    weights = field_weights(schema, "params")

    def train(model: nn.Module, on: CTRData, folder: str, trainer=CTRTrainer) -> Dict[str, Any]:
        return fit_model(model, on, cfg.retrain, run_dir / folder, log, cfg.eval_batch_size, trainer, resume)

    # 1. search
    log(f"[stage 1/3] search: {cfg.search.epochs} epochs")
    start = time.perf_counter()
    search_model, search_info = run_search(cfg, data, run_dir / "search", log, resume)
    write_json_atomic(run_dir / "search" / "history.json", search_info.pop("history"))
    timings["search"] = time.perf_counter() - start

    # the full-dimension model: a baseline, and the retrained models' teacher when distilling (trained
    # here, before any retrained model is drawn, so that it leaves their random streams alone)
    full = None
    if cfg.baselines or cfg.distill:
        log("[baseline] full dimensions for all instances" + (f" (the teacher, α = {cfg.distill})" if cfg.distill else ""))
        start = time.perf_counter()
        torch.manual_seed(cfg.retrain.seed)
        full = build_ctr_model(schema, cfg.model)
        full_fit = train(full, data, "baseline-full")
        timings["full"] = time.perf_counter() - start
    train_data = distilled(data, full, cfg.distill, cfg.eval_batch_size)
    warm = search_model if cfg.retrain_init == "search" else None

    # 2. cluster
    log(f"[stage 2/3] clustering: mode {cfg.cluster_mode}, k = {cfg.clusters}")
    start = time.perf_counter()
    patterns, mean_prob = gate_outputs(search_model, data.train, cfg.eval_batch_size)

    def embeddings(rows: Optional[torch.Tensor]):
        table = data.train if rows is None else subset(data.train, rows.numpy())
        return masked_tokens(search_model, table, cfg.eval_batch_size)

    clustering = cluster(patterns, cfg.cluster_mode, cfg.clusters, embeddings,
                         seed=cfg.search.seed, iters=cfg.kmeans_iters, max_codes=cfg.max_codes,
                         sample=cfg.kmeans_sample, min_fraction=cfg.min_group_fraction)
    gate_embedding = sum(m.weight.numel() for m in search_model.embedding.gates.modules() if isinstance(m, nn.Embedding))
    budget = Budget(schema, cfg.model, cfg.blocks, cfg.budget, gate_embedding) if cfg.budget is not None else None
    shared = cfg.tables == "shared"
    if budget is not None:
        share = torch.bincount(clustering.labels).float() / len(clustering.labels)
        blocks = budget.fit(clustering.blocks, group_votes(patterns, clustering.labels, len(share)), share, shared)
        report = budget.report(clustering.blocks, blocks, share, shared)
        clustering = replace(clustering, blocks=blocks, info={**clustering.info, "budget": report})
        log(f"budget {cfg.budget:.0%} of the full model's embedding parameters "
            f"({'the whole ensemble' if shared else 'per instance'}): {report['dropped_blocks']} kept blocks dropped")
    if cfg.retrain_data == "all":  # groups that would retrain the same model become one
        dims_only = cfg.retrain_init == "scratch"  # from scratch, which columns does not matter, only how many
        clustering = merge_identical(clustering, clustering.blocks.sum(-1) if dims_only else clustering.blocks)
    columns = [[field_columns(on, block, cfg.retrain_init) for on in g.tolist()] for g in clustering.blocks]
    torch.manual_seed(cfg.retrain.seed)  # the shared-table ensemble is trained as built
    ensemble = IHASEnsemble(schema, cfg.model, cfg.gate, cfg.blocks, columns, len(clustering.router.codes), cfg.tables)
    ensemble.gates.load_state_dict(search_model.embedding.gates.state_dict())
    ensemble.gates.requires_grad_(False)
    ensemble.codes.copy_(clustering.router.codes)
    ensemble.code_group.copy_(clustering.router.code_group)
    groups = {"train": clustering.labels.numpy(), "valid": routed_rows(ensemble, data.valid, cfg.eval_batch_size),
              "test": routed_rows(ensemble, data.test, cfg.eval_batch_size)}
    dims = group_dims(clustering.blocks, block)
    cluster_rows = [{"group": g, **{f"{s}_rows": int((groups[s] == g).sum()) for s in groups},
                     "train_positive_rate": float(np.asarray(data.train.label)[groups["train"] == g].mean()),
                     "dims": dict(zip(schema.fields, dims[g])), "blocks": clustering.blocks[g].int().tolist()}
                    for g in range(len(columns))]
    cluster_info = {**clustering.info, **pattern_summary(patterns, weights), "groups": cluster_rows}
    write_json_atomic(run_dir / "cluster" / "clusters.json", cluster_info)
    timings["cluster"] = time.perf_counter() - start
    log(f"clustering: {clustering.info['distinct_patterns']} distinct patterns on training data → "
        f"{plural(len(columns), 'group')} (router keeps {clustering.info['router_codes']} patterns, agrees with the "
        f"clustering on {clustering.info['router_agreement']:.1%} of training rows)")
    for row in cluster_rows:
        log(f"  group {row['group']}: {row['train_rows']:,} train / {row['valid_rows']:,} valid / "
            f"{row['test_rows']:,} test rows; dims {row['dims']}")

    # 3. retrain
    start = time.perf_counter()
    group_fits = []
    if shared:
        log(f"[stage 3/3] retraining {len(columns)} group model(s) together on shared tables ({cfg.retrain_data} data)")
        trainer = GroupsTrainer if cfg.retrain_data == "all" else CTRTrainer
        group_fits.append(train(ensemble, train_data, "retrain/shared", trainer))
    else:  # independent trainings: one job each of cfg.executor (here, or Ray tasks)
        log(f"[stage 3/3] retraining {plural(len(columns), 'group model')} ({cfg.retrain_init} init, {cfg.retrain_data} "
            f"data)" + ("" if cfg.executor.kind == "local" else f" as {cfg.executor.kind} tasks"))
        jobs = []
        for g, cols in enumerate(columns):
            if cfg.retrain_data == "group":
                sub = CTRData(data.name, schema, *(subset(train_data.split(s), np.flatnonzero(groups[s] == g))
                                                   for s in ("train", "valid", "test")))
            else:
                sub = train_data
            jobs.append((cfg.model, cols, cfg.retrain.seed, warm, sub, cfg.retrain, run_dir / f"retrain/group-{g}", log,
                         cfg.eval_batch_size, resume))
        for g, (fit, weights) in enumerate(make_executor(cfg.executor).map(group_job, jobs)):
            ensemble.models[g].load_state_dict(weights)
            group_fits.append(fit)
    ensemble.eval()
    ensemble.save(run_dir / "ensemble")
    ensemble.export_program(run_dir / "export", next(batches(data.test, 2))[:2], cfg.export_onnx)
    timings["retrain"] = time.perf_counter() - start

    methods: Dict[str, Dict[str, Any]] = {}
    test_share = np.bincount(groups["test"], minlength=len(columns)) / len(groups["test"])
    group_flops = []
    for g in range(len(columns)):
        rows = np.flatnonzero(groups["test"] == g)
        if len(rows):
            one = subset(data.test, rows[:1])
            group_flops.append(count_flops(ensemble, (torch.from_numpy(one.cat), torch.from_numpy(one.num)))["flops"])
        else:
            group_flops.append(0)
    group_emb = ensemble.group_embedding_params()
    gate_emb = ensemble.gate_embedding_params()
    ihas = {**evaluate_both(ensemble, data, cfg.eval_batch_size),
            **measure(ensemble, data, cfg, flops=float(np.dot(test_share, group_flops))),
            "embedding_params_per_instance": float(gate_emb + np.dot(test_share, group_emb)),
            "gate_embedding_params": gate_emb, "group_embedding_params": group_emb,
            "gate_params": sum(p.numel() for p in ensemble.gates.parameters()),
            "active_dims_per_instance": float(np.dot(test_share, [sum(d) for d in dims])),
            "retrain": group_fits}
    methods["ihas"] = ihas

    # baselines
    if full is not None:
        methods["full"] = {**evaluate_both(full, data, cfg.eval_batch_size), **measure(full, data, cfg), **full_fit,
                           "active_dims_per_instance": schema.num_fields * cfg.model.embed_dim}
    if cfg.baselines:
        start = time.perf_counter()
        mean_on = (mean_prob > 0.5)  # (F, K)
        if budget is not None:  # the same cap, with no gate network to pay for (one group: both caps agree)
            mean_on = fit_budget(mean_on[None], mean_prob[None], torch.ones(1), budget.block_cost,
                                 budget.limit - budget.fixed)[0]
        auto_cols = [field_columns(on, block, cfg.retrain_init) for on in mean_on.tolist()]
        log(f"[baseline] AutoDim-like: one searched dimension per field for all instances: "
            f"{dict(zip(schema.fields, map(len, auto_cols)))}")
        auto = mixed_model(data, cfg.model, auto_cols, cfg.retrain.seed, warm)
        fit = train(auto, train_data, "baseline-autodim")
        methods["autodim"] = {**evaluate_both(auto, data, cfg.eval_batch_size), **measure(auto, data, cfg), **fit,
                              "dims": dict(zip(schema.fields, map(len, auto_cols))),
                              "active_dims_per_instance": sum(map(len, auto_cols))}
        within = "embedding_params" if shared else "embedding_params_per_instance"
        width = uniform_width(schema, cfg.model, ihas[within])
        log(f"[baseline] uniform: every field {width} wide (the widest within iHAS's "
            f"{'ensemble' if shared else 'per-instance'} embedding parameters)")
        uniform = mixed_model(data, cfg.model, [list(range(width))] * schema.num_fields, cfg.retrain.seed, warm)
        fit = train(uniform, train_data, "baseline-uniform")
        methods["uniform"] = {**evaluate_both(uniform, data, cfg.eval_batch_size), **measure(uniform, data, cfg), **fit,
                              "width": width, "active_dims_per_instance": width * schema.num_fields}
        timings["baselines"] = timings.pop("full") + time.perf_counter() - start
    if full is not None:
        ref = methods["full"]["embedding_params"]
        for name, m in methods.items():
            m["embedding_params_vs_full"] = m["embedding_params"] / ref
        ihas["embedding_params_per_instance_vs_full"] = ihas["embedding_params_per_instance"] / ref
        ihas["test_auc_minus_full"] = ihas["test"]["auc"] - methods["full"]["test"]["auc"]

    summary = {"dataset": data.name, "backbone": cfg.model.name, "run_dir": str(run_dir),
               "full_width": cfg.model.embed_dim, "blocks": cfg.blocks, "block_size": block,
               "fields": schema.fields, "vocab_sizes": schema.vocab_sizes,
               "search": search_info, "clusters": cluster_info, "methods": methods, "timings": timings}
    write_json_atomic(run_dir / "summary.json", summary)
    for line in summary_table(summary):
        log(line)
    return summary


def summary_table(summary: Dict[str, Any]) -> List[str]:
    methods = summary["methods"]
    ref = methods.get("full", {}).get("embedding_params")
    lines = [f"iHAS summary — {summary['backbone']} on {summary['dataset']} "
             f"({plural(summary['clusters']['num_groups'], 'group')}, mode {summary['clusters']['mode']})",
             f"{'method':<24} {'test AUC':>9} {'log loss':>9} {'emb params':>11} {'× full':>7} {'MFLOPs':>8}"]

    def row(name, m, params):
        ratio = f"{params / ref:7.3f}" if ref else f"{'—':>7}"
        lines.append(f"{name:<24} {m['test']['auc']:9.4f} {m['test']['logloss']:9.4f} {params:11,.0f} {ratio} "
                     f"{m['flops_per_sample'] / 1e6:8.3f}")

    for name, label in (("full", "full dimensions"), ("autodim", "AutoDim-like"), ("uniform", "uniform width")):
        if name in methods:
            row(label, methods[name], methods[name]["embedding_params"])
    ihas = methods["ihas"]
    row("iHAS (ensemble total)", ihas, ihas["embedding_params"])
    row("iHAS (per instance)", ihas, ihas["embedding_params_per_instance"])
    for g in summary["clusters"]["groups"]:
        lines.append(f"  group {g['group']}: {g['train_rows']:,} train rows, dims "
                     + " ".join(f"{k}={v}" for k, v in g["dims"].items()))
    return lines


def load_ihas_ensemble(run_dir: Path) -> IHASEnsemble:
    return IHASEnsemble.load(Path(run_dir) / "ensemble")


def evaluate_ihas(run_dir: Path, split: str = "test", data_dir: Optional[str] = None) -> Dict[str, Any]:
    """AUC / log loss of a finished run's exported ensemble."""
    cfg = cfglib.from_dict(IHASConfig, yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))
    data = cfg.data.load(data_dir)
    return CTREvaluator(data, cfg.eval_batch_size).evaluate(load_ihas_ensemble(run_dir), split)["ctr"]
