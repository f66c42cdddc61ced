"""Peak memory: CPU peak resident set of a subprocess minus a torch-import baseline; CUDA peak allocation.

tracemalloc does not see tensors and RUSAGE_CHILDREN keeps the maximum over all children ever run,
so each measurement is a fresh child that reports its own VmHWM (see recarch.cost._memory_child).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch

MARKER = "RECARCH_MEMORY "  # prefixes the child's result line, apart from anything the target prints
METHOD = "VmHWM in a subprocess minus torch-import baseline"


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the recarch package
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _start_child(target: str, kwargs: dict, threads: int, python: str) -> subprocess.Popen:
    cmd = [python, "-m", "recarch.cost._memory_child", target, json.dumps(kwargs),
           "--threads", str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_child_env(threads))


def _finish_child(proc: subprocess.Popen, target: str, timeout: float) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"memory child for {target!r} ran past {timeout} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {target!r} exited with {proc.returncode}:\n"
                           f"{stderr[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise RuntimeError(f"memory child for {target!r} printed no {MARKER.strip()} line; "
                           f"stdout ends: {stdout[-500:]!r}")
    return json.loads(lines[-1][len(MARKER):])


# Per-process cache of the torch-import baseline, keyed by (threads, python): it never changes.
_BASELINE_MB: dict[tuple[int, str], float] = {}


def baseline_rss_mb(threads: int = 1, python: str = sys.executable) -> float:
    """Peak RSS (MiB) of a child that only imports torch; measured once per process and arguments."""
    key = (threads, python)
    if key not in _BASELINE_MB:
        _BASELINE_MB[key] = float(_finish_child(_start_child("-", {}, threads, python), "-", 120)
                                  ["peak_rss_mb"])
    return _BASELINE_MB[key]


def peak_memory_subprocess(target: str, kwargs: dict, threads: int = 1, timeout: float = 600,
                           python: str = sys.executable) -> dict:
    """Peak CPU memory of ``target(**kwargs)`` run in a fresh ``python`` process.

    target is "package.module:function" importable with the recarch source on the path; kwargs
    must be JSON-serialisable. MiB throughout. Returns {"peak_rss_mb", "baseline_rss_mb",
    "net_mb", "threads", "result" (the function's return value if JSON-serialisable), "method"}."""
    if ":" not in target:
        raise ValueError(f"peak_memory_subprocess: target {target!r} must be 'package.module:function'")
    key = (threads, python)
    # A first baseline runs beside the target: importing torch twice in a row costs seconds.
    pending = None if key in _BASELINE_MB else _start_child("-", {}, threads, python)
    try:
        child = _finish_child(_start_child(target, kwargs, threads, python), target, timeout)
    except BaseException:
        if pending is not None:
            pending.kill()
            pending.communicate()
        raise
    if pending is not None:
        _BASELINE_MB[key] = float(_finish_child(pending, "-", 120)["peak_rss_mb"])
    baseline = _BASELINE_MB[key]
    peak = float(child["peak_rss_mb"])
    return {"peak_rss_mb": peak, "baseline_rss_mb": baseline, "net_mb": peak - baseline,
            "threads": threads, "result": child.get("result"), "method": METHOD}


def cuda_peak_memory(fn: Callable[..., Any], *args: Any, device: str | torch.device | None = None,
                     **kwargs: Any) -> dict:
    """Peak CUDA memory (MiB) allocated by tensors during ``fn(*args, **kwargs)``.

    Resets the device's peak statistics first, so the number is this call's own peak, including
    whatever was already allocated. Returns {"peak_allocated_mb", "peak_reserved_mb", "device",
    "method"}."""
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_peak_memory: CUDA is not available")
    dev = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    fn(*args, **kwargs)
    torch.cuda.synchronize(dev)
    return {"peak_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20,
            "peak_reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20,
            "device": torch.cuda.get_device_name(dev), "method": "torch.cuda.max_memory_allocated"}
