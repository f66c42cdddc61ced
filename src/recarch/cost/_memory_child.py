"""Child process for peak-memory measurement: runs one ``module:function`` and prints its VmHWM.

Usage: ``python -m recarch.cost._memory_child TARGET JSONKWARGS [--threads N]``; TARGET "-" only
imports torch (the baseline). The last stdout line is ``RECARCH_MEMORY {json}``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
from pathlib import Path

import torch

from recarch.cost.memory import MARKER


def selftest_alloc(mb: float) -> int:
    """Allocate and touch an ``mb`` MiB float32 tensor (a known load for testing the measurement);
    returns the bytes allocated."""
    x = torch.ones(int(mb * 2**20) // 4, dtype=torch.float32)  # ones, not empty: pages must be touched
    return int(x.numel() * x.element_size())


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MiB; ru_maxrss where /proc is absent."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # the kernel reports kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, kB on Linux


def _resolve(target: str):
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"memory target {target!r}: expected 'package.module:function'")
    func = getattr(importlib.import_module(module_name), func_name, None)
    if not callable(func):
        raise ValueError(f"memory target {target!r}: {module_name} has no callable {func_name!r}")
    return func


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recarch.cost._memory_child")
    parser.add_argument("target", help="'package.module:function', or '-' for the torch-only baseline")
    parser.add_argument("kwargs", nargs="?", default="{}", help="keyword arguments as a JSON object")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = None
    if args.target != "-":
        kwargs = json.loads(args.kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError(f"memory target kwargs: expected a JSON object, got {args.kwargs!r}")
        result = _resolve(args.target)(**kwargs)
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            result = repr(result)[:200]
    print(MARKER + json.dumps({"peak_rss_mb": peak_rss_mb(), "result": result}), flush=True)


if __name__ == "__main__":
    main()
