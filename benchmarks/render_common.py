"""Formatting shared by BENCHMARKS.md's renderers (render.py and the render_* sections it calls)."""
from __future__ import annotations


def fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def short_commit(commit) -> str:
    if not commit:
        return "unknown"
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")


def machine_line(m: dict, seed) -> str:
    return (f"Machine: {m.get('cpu')} ({m.get('cores')} cores), torch {m.get('torch')}, python {m.get('python')}, "
            f"{m.get('threads')} thread(s) for training, commit `{short_commit(m.get('git_commit'))}`, seed {seed}.")
