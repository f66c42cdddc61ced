"""The cost report every result carries: FLOPs per sequence, parameters, inference time, machine.

Speed is put beside the machine's own fp32 matmul peak, measured in the same process (as nanoGPT's MFU).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from recarch.cost.flops import UNIT, count_flops, flops_per_sequence
from recarch.cost.timing import first_tensor, inference_time


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit() -> str | None:
    """HEAD, with ``-dirty`` when tracked files differ from it (the run used uncommitted code)."""
    head = _git("rev-parse", "HEAD")
    if head and _git("status", "--porcelain", "--untracked-files=no"):
        head += "-dirty"
    return head


def machine_info(threads: int | None = None) -> dict:
    """CPU model, core counts, torch/python versions, thread count (given, else torch's current),
    CUDA device if any, and the git commit of the recarch checkout (None outside a repository)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "cores_available": available,
            "threads": threads if threads is not None else torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": sys.platform,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "git_commit": git_commit()}


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 (size×size)·(size×size) matmul throughput on CPU in GFLOP/s
    (2·size³ FLOPs each), with ``threads`` threads; the previous thread count is restored."""
    if threads < 1 or size < 1 or repeats < 1:
        raise ValueError(f"matmul_peak_gflops: threads, size, repeats must be >= 1, "
                         f"got {threads}, {size}, {repeats}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen)
        b = torch.randn(size, size, generator=gen)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: thread pool start, page faults on out
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2.0 * size**3 / best / 1e9


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; tied (shared) tensors count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _batch_rows(batch: Any) -> int:
    tensor = first_tensor(batch)
    return int(tensor.shape[0]) if tensor is not None and tensor.dim() else 0


def cost_report(model: nn.Module, seq_len: int, test_batches: Sequence[Any], threads: int,
                batch_size: int, memory: dict | None = None, method: str = "forward",
                peak_size: int = 1024, flops_inputs: tuple | None = None) -> dict:
    """Cost of ``model.<method>`` on the test set: FLOPs per sequence (counted at seq_len),
    parameters, inference time over ``test_batches`` (each a tensor or a tuple of arguments) at
    ``threads``, the achieved GFLOP/s beside the matmul peak, machine info, and ``memory`` as given
    (e.g. peak_memory_subprocess's dict; None if not measured). The model's training flag is restored.
    ``flops_inputs``: one row of other inputs than an id sequence (e.g. a CTR sample) to count FLOPs on."""
    call = getattr(model, method)
    was_training = model.training
    model.eval()
    try:
        if flops_inputs is None:
            flops = flops_per_sequence(model, seq_len, batch=1, method=method)
        else:
            flops = {"flops_per_sequence": count_flops(model, flops_inputs, method)["flops"]}
        timing = inference_time(lambda b: call(*b) if isinstance(b, (tuple, list)) else call(b),
                                test_batches, threads)
    finally:
        model.train(was_training)
    sequences = sum(_batch_rows(b) for b in test_batches)
    peak = matmul_peak_gflops(threads, size=peak_size) if timing["device"] == "cpu" else None
    seconds = timing["seconds"]
    achieved = flops["flops_per_sequence"] * sequences / seconds / 1e9 if seconds > 0 else None
    return {
        "flops_per_sequence": flops["flops_per_sequence"], "flops_unit": UNIT, "flops_method": method,
        "seq_len": seq_len, "params": count_parameters(model),
        "inference": {**timing, "batch_size": batch_size, "sequences": sequences},
        "achieved_gflops": achieved, "matmul_peak_gflops": peak,
        "fraction_of_peak": achieved / peak if achieved is not None and peak else None,
        "memory": memory, "machine": machine_info(threads),
    }
