"""Build the EASRec paper's Table III (accuracy), Table IV (inference time and memory), Table V (gate
ablation) and Fig. 4 (λ sweep) from our runs: mean ± std over seeds, Welch's t-test of EASRec against
each other row (the paper's two-sided test, p < 0.05), the paper's numbers beside ours, a markdown
file, a JSON file and a PNG (an accuracy-vs-FLOPs Pareto plot, or the λ curve)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from tqdm import tqdm

from recarch.executor import ExecutorConfig, make_executor
from recarch.io import save_figure_atomic, write_json_atomic, write_text_atomic
from recarch.registry import Registry
from recarch.reproduce.methods import (METHODS, dataset_has_features, method_job, needs_features, remeasure_cost,
                                       run_folder)
from recarch.reproduce.stats import mean_std, welch_t_test
from recarch.search.job import load_search_config

PAPER = json.loads((Path(__file__).with_name("easrec_paper.json")).read_text())
PAPER_DATASET = {"ml-1m": "ml-1m", "gowalla-checkins": "gowalla", "douban": "douban"}  # ours → the paper's
METRICS = ["recall@10", "mrr@10", "ndcg@10"]
PROTOCOL = "pop100"  # the paper's protocol


@dataclass(frozen=True)
class Table:
    title: str
    methods: Sequence[str]
    render: Callable[["Result"], List[str]]
    plot: str  # "pareto" or "lambda"


TABLES: Registry[Table] = Registry("table")


class Result:
    """The rows of one table on one dataset: per method, one row per seed."""

    def __init__(self, table: str, dataset: str, rows: Dict[str, List[Dict[str, Any]]]) -> None:
        self.table, self.dataset, self.rows = table, dataset, rows
        self.paper_key = PAPER_DATASET.get(dataset)

    def values(self, method: str, split: str, metric: str) -> List[float]:
        return [r[split][PROTOCOL][metric] for r in self.rows[method]]

    def stat(self, method: str, split: str, metric: str) -> str:
        mean, std = mean_std(self.values(method, split, metric))
        return f"{mean:.4f} ± {std:.4f}" if len(self.rows[method]) > 1 else f"{mean:.4f}"

    def cost(self, method: str, key: str) -> Optional[float]:
        values = [r[key] for r in self.rows[method] if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    def test_against_first(self, method: str) -> Optional[dict]:
        first = next(iter(self.rows))
        if method == first:
            return None
        return welch_t_test(self.values(first, "test", "ndcg@10"), self.values(method, "test", "ndcg@10"))

    def to_json(self) -> Dict[str, Any]:
        return {"table": self.table, "dataset": self.dataset, "protocol": PROTOCOL, "paper_dataset": self.paper_key,
                "paper_source": PAPER["source"], "rows": self.rows,
                "significance": {m: self.test_against_first(m) for m in self.rows}}


def _p(test: Optional[dict]) -> str:
    if test is None:
        return "—"
    return f"{test['p']:.3f}{' *' if test['p'] < 0.05 else ''}"


def _p_clause(test: Optional[dict]) -> str:
    """", p 0.42" (", p < 0.01"), or nothing under 2 seeds."""
    if test is None:
        return ""
    return ", p < 0.01" if test["p"] < 0.01 else f", p {test['p']:.2f}"


def render_table3(r: Result) -> List[str]:
    paper = PAPER["table3"].get(r.paper_key or "", {})
    head = "| method | " + " | ".join(f"valid {m}" for m in METRICS) + " | " + " | ".join(f"test {m}" for m in METRICS) + \
           " | paper test R / M / N @10 | p (test NDCG@10 vs first row) |"
    out = [head, "|" + "---|" * (len(METRICS) * 2 + 3)]
    for m in r.rows:
        p = paper.get(m, {}).get("test")
        paper_cell = " / ".join(f"{p[k]:.4f}" for k in METRICS) if p else "—"
        out.append(f"| {METHODS.get(m).label} | " + " | ".join(r.stat(m, "valid", k) for k in METRICS) + " | "
                   + " | ".join(r.stat(m, "test", k) for k in METRICS) + f" | {paper_cell} | {_p(r.test_against_first(m))} |")
    return out


def retime(r: Result, runs_dir: Path, data_dir: Optional[str], batch_size: int = 256, threads: int = 1,
           rounds: int = 3) -> None:
    """Time every method's test-set inference in this process (first seed's model, same batch size and
    threads), round-robin over ``rounds`` rounds keeping each method's fastest, so that Table IV's
    ratios are not skewed by other load on the machine."""
    import torch

    from recarch import run
    from recarch.cost.timing import inference_time

    jobs = {}
    for method, rows in r.rows.items():
        cfg, data, model = run.load_run(run_folder(runs_dir, r.dataset, method, rows[0]["seed"]), data_dir)
        jobs[method] = (model, list(torch.from_numpy(run.make_evaluator(cfg, data).inputs("test")).split(batch_size)))
    best = {m: float("inf") for m in jobs}
    for _ in range(rounds):
        for method, (model, batches) in jobs.items():
            best[method] = min(best[method], inference_time(model.score_last, batches, threads, warmup=2)["seconds"])
    for method, rows in r.rows.items():
        for row in rows:
            row["inference_seconds_same_run"] = best[method]


def render_table4(r: Result) -> List[str]:
    paper = PAPER["table4"]["values"].get(r.paper_key or "", {})
    device = next((row["inference_device"] for rows in r.rows.values() for row in rows if row.get("inference_device")), "cpu")
    out = [f"| method | d / d_ff / layers | MFLOPs/seq | params | inference s (test set, {device}, timed back to back) | peak MB | "
           "test NDCG@10 | paper inference s / GPU GB |", "|---|---|---|---|---|---|---|---|"]
    for m in r.rows:
        shape = r.rows[m][0]["model"]
        p = paper.get(m)
        paper_cell = f"{p['inference_s']} s / {p['gpu_memory_gb']} GB" if p else "—"
        flops, params, infer, mem = (r.cost(m, k) for k in ("flops_per_sequence", "params", "inference_seconds_same_run", "peak_memory_mb"))
        out.append(f"| {METHODS.get(m).label} | {shape['hidden_size']} / {shape['inner_size']} / {shape['n_layers']} | "
                   f"{flops / 1e6 if flops else float('nan'):.2f} | {params or 0:,.0f} | {infer or float('nan'):.3f} | "
                   f"{mem or float('nan'):.0f} | {r.stat(m, 'test', 'ndcg@10')} | "
                   f"{paper_cell} |")
    return out


def render_table5(r: Result) -> List[str]:
    paper = PAPER["table5"].get(r.paper_key or "", {})
    keys = {"easrec": "gates2", "easrec-gates1": "gates1", "easrec-gates0": "gates0"}
    out = ["| gates | " + " | ".join(f"test {m}" for m in METRICS) + " | paper R / M / N @10 | p (vs 2 layers) |",
           "|---|---|---|---|---|---|"]
    for m in r.rows:
        p = paper.get(keys[m])
        label = "2 layers" if m == "easrec" else METHODS.get(m).label
        out.append(f"| {label} | " + " | ".join(r.stat(m, "test", k) for k in METRICS) + " | "
                   + (" / ".join(f"{p[k]:.4f}" for k in METRICS) if p else "—") + f" | {_p(r.test_against_first(m))} |")
    return out


def render_fig4(r: Result) -> List[str]:
    out = ["| λ | chosen d / d_ff / layers | test NDCG@10 | MFLOPs/seq |", "|---|---|---|---|"]
    for m in r.rows:
        shape = r.rows[m][0]["model"]
        out.append(f"| {m.removeprefix('easrec-lam')} | {shape['hidden_size']} / {shape['inner_size']} / {shape['n_layers']} | "
                   f"{r.stat(m, 'test', 'ndcg@10')} | {(r.cost(m, 'flops_per_sequence') or 0) / 1e6:.2f} |")
    return out + ["", PAPER["fig4"]["note"]]


MAIN = ["easrec", "darts", "proxylessnas", "recnas", "sasrec", "fdsa", "sasrecf", "sasrec-linear", "fdsa-linear",
        "sasrecf-linear"]
TABLES.register("table3")(Table("Table III: accuracy of every method", MAIN, render_table3, "pareto"))
TABLES.register("table4")(Table("Table IV: inference time and memory", MAIN, render_table4, "pareto"))
TABLES.register("table5")(Table("Table V: data-aware gate ablation", ["easrec", "easrec-gates1", "easrec-gates0"],
                                render_table5, "pareto"))
TABLES.register("fig4")(Table("Fig. 4: the trade-off λ", [f"easrec-lam{lam}" for lam in PAPER["fig4"]["lambdas"]],
                              render_fig4, "lambda"))


def dominators(points: Dict[str, tuple], method: str) -> List[str]:
    """The methods that beat ``method`` on FLOPs (lower or equal) and NDCG@10 (higher or equal), strictly on one."""
    f, a = points[method]
    return [m for m, (f2, a2) in points.items() if m != method and f2 <= f and a2 >= a and (f2 < f or a2 > a)]


def pareto_methods(points: Dict[str, tuple]) -> List[str]:
    """Methods no other method beats on both FLOPs (lower) and NDCG@10 (higher)."""
    return [m for m in points if not dominators(points, m)]


def off_front_line(result: Result, points: Dict[str, tuple], method: str) -> List[str]:
    """Why ``method`` is off the Pareto front: who beats it, by how much, and (≥ 2 seeds) whether the
    NDCG@10 difference is significant."""
    if method not in points or not dominators(points, method):
        return []
    f, a = points[method]
    parts = []
    for m in dominators(points, method):
        f2, a2 = points[m]
        test = welch_t_test(result.values(m, "test", "ndcg@10"), result.values(method, "test", "ndcg@10"))
        parts.append(f"{METHODS.get(m).label} ({f2:.2f} vs {f:.2f} MFLOPs/seq, test NDCG@10 {a2:.4f} vs {a:.4f}"
                     + _p_clause(test) + ")")
    return [f"{METHODS.get(method).label} is off the front, beaten by " + "; ".join(parts) + ".", ""]


def _architecture(row: Dict[str, Any]) -> tuple:
    model = row["model"]
    return tuple(model.get(k) for k in ("name", "attention", "hidden_size", "inner_size", "n_layers", "gates"))


def shared_run_lines(result: Result) -> List[str]:
    """Rows whose config is another cached method's, so the run was copied rather than repeated."""
    out = []
    for m, rows in result.rows.items():
        seeds = [str(r["seed"]) for r in rows if r.get("same_run_as")]
        if seeds:
            out += [f"{METHODS.get(m).label} has exactly the config of {METHODS.get(rows[0]['same_run_as']).label}: "
                    f"on seed(s) {', '.join(seeds)} it is that run (runs are deterministic per seed).", ""]
    return out


def head_start_lines(result: Result, inherited: bool = True) -> List[str]:
    """Search methods whose derived model, on some seed, is a hand-sized model's own architecture: the
    two then differ only in where training starts (the supernet's weights vs scratch), and the table
    says how much that alone is worth. With ``inherited`` False both start from scratch, and the line
    is a check that the two paths train the same model."""
    out = []
    for searched in (m for m in result.rows if METHODS.get(m).strategy):
        for hand in (m for m in result.rows if not METHODS.get(m).strategy):
            seeds = {r["seed"]: r for r in result.rows[hand]}
            pairs = [(r, seeds[r["seed"]]) for r in result.rows[searched]
                     if r["seed"] in seeds and _architecture(r) == _architecture(seeds[r["seed"]])]
            if not pairs:
                continue
            a = [r["test"][PROTOCOL]["ndcg@10"] for r, _ in pairs]
            b = [h["test"][PROTOCOL]["ndcg@10"] for _, h in pairs]
            shape = pairs[0][1]["model"]
            head = (f"{METHODS.get(searched).label} derived {METHODS.get(hand).label}'s own architecture "
                    f"({shape['hidden_size']} / {shape['inner_size']} / {shape['n_layers']}) on seed(s) "
                    f"{', '.join(str(r['seed']) for r, _ in pairs)}; ")
            if inherited:
                out += [head + f"retrained from the supernet's weights it reaches test NDCG@10 {sum(a) / len(a):.4f}, "
                        f"trained from scratch {sum(b) / len(b):.4f}{_p_clause(welch_t_test(a, b))}: that difference "
                        "is the head start alone.", ""]
            else:
                out += [head + f"both trained from scratch, they reach test NDCG@10 {sum(a) / len(a):.4f} and "
                        f"{sum(b) / len(b):.4f}.", ""]
    return out


def accuracy_vs_flops(result: Result) -> Dict[str, tuple]:
    """Per method with a FLOPs count: (MFLOPs per sequence, mean test NDCG@10)."""
    return {m: (result.cost(m, "flops_per_sequence") / 1e6, sum(result.values(m, "test", "ndcg@10")) / len(result.rows[m]))
            for m in result.rows if result.cost(m, "flops_per_sequence")}


def plot(result: Result, kind: str, path: Path) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = accuracy_vs_flops(result)
    front = pareto_methods(points)
    fig, ax = plt.subplots(figsize=(6, 4))
    if kind == "lambda":
        lams = [float(m.removeprefix("easrec-lam")) for m in points]
        ax.plot(lams, [p[1] for p in points.values()], "o-", label="test NDCG@10")
        ax2 = ax.twinx()
        ax2.plot(lams, [p[0] for p in points.values()], "s--", color="tab:red", label="MFLOPs/seq")
        ax.set_xscale("log")
        ax.set_xlabel("λ")
        ax2.set_ylabel("MFLOPs / sequence")
    else:
        for m, (f, a) in points.items():
            ax.scatter(f, a, color="tab:red" if m in front else "tab:blue")
            ax.annotate(METHODS.get(m).label, (f, a), fontsize=6)
        ax.set_xlabel("MFLOPs / sequence")
        ax.set_xscale("log")
    ax.set_ylabel(f"test NDCG@10 ({PROTOCOL})")
    ax.set_title(f"{result.dataset}: {TABLES.get(result.table).title}", fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    return front


def reproduce(table: str, dataset: str, seeds: int, preset: Sequence[str], sets: Sequence[str] = (),
              data_dir: Optional[str] = None, out_dir: Path = Path("reproduce"), echo: bool = False,
              first_seed: int = 42, only: Sequence[str] = (), remeasure: bool = False,
              executor: ExecutorConfig = ExecutorConfig()) -> Dict[str, Any]:
    """Run (or reuse) every method × seed the table needs, each an independent job of ``executor`` (in
    this process, or a Ray task), then write ``<table>-<dataset>.{md,json,png}``.

    With ``only``, run just those methods' rows into the cache and write no table: processes given
    different ``only`` lists fill one ``out_dir`` side by side, and a last call without it assembles
    the table from the cache. ``remeasure``: measure every row's cost again with the code at hand (after
    a change to a kernel, say) before the table is built."""
    spec = TABLES.get(table)
    out_dir = Path(out_dir)
    rows: Dict[str, List[Dict[str, Any]]] = {}
    methods, skipped = list(spec.methods), []
    unknown = [m for m in only if m not in methods]
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not a method of {table} (its methods: {', '.join(methods)})")
    if any(needs_features(m) for m in methods) and not dataset_has_features(dataset, preset, sets, data_dir):
        skipped = [m for m in methods if needs_features(m)]
        methods = [m for m in methods if m not in skipped]
    runner = make_executor(executor)
    jobs = [(m, dataset, first_seed + s, list(preset), list(sets), data_dir, out_dir / "runs", echo and runner.in_process)
            for m in methods for s in range(seeds) if not only or m in only]
    done = runner.map(method_job, tqdm(jobs, desc=f"{table} on {dataset}", leave=False) if runner.in_process else jobs)
    for (method, _, seed, *_), row in zip(jobs, done):
        if remeasure:
            row = remeasure_cost(method, dataset, seed, out_dir / "runs", data_dir)
        rows.setdefault(method, []).append(row)
    if only:
        return {"markdown": None, "rows": rows}
    result = Result(table, dataset, rows)
    if table == "table4":
        retime(result, out_dir / "runs", data_dir)
    stem = out_dir / f"{table}-{dataset}"
    front = plot(result, spec.plot, stem.with_suffix(".png"))
    lines = [f"## {spec.title} — {dataset}", "",
             f"Protocol {PROTOCOL} (the paper's), {seeds} seed(s) from {first_seed} (mean ± std), preset {', '.join(map(str, preset))}"
             + (f", overrides {' '.join(sets)}" if sets else "") + ".",
             f"Paper numbers: {PAPER['source']}" + (f" (its dataset: {PAPER['datasets'][result.paper_key]})" if result.paper_key
                                                    else "; the paper has no results on this dataset") + ".",
             "p: Welch's two-sided t-test on test NDCG@10 against the first row (* p < 0.05; needs ≥ 2 seeds).", "",
             *spec.render(result), "",
             *([f"Not run: {', '.join(METHODS.get(m).label for m in skipped)} — they read item attributes and "
                f"{dataset} has none.", ""] if skipped else []),
             f"On the accuracy-vs-FLOPs Pareto front: {', '.join(METHODS.get(m).label for m in front)} "
             f"(`{stem.with_suffix('.png').name}`).", "",
             *(off_front_line(result, accuracy_vs_flops(result), methods[0]) if spec.plot == "pareto" else []),
             *shared_run_lines(result),
             *head_start_lines(result, load_search_config(list(preset), list(sets)).inherit)]
    data = {**result.to_json(), "pareto_front": front, "not_run": skipped, "seeds": seeds, "first_seed": first_seed, "preset": list(map(str, preset)), "sets": list(sets)}
    write_json_atomic(stem.with_suffix(".json"), data)
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines))
    return {"markdown": stem.with_suffix(".md"), **data}
