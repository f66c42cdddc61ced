"""Wall-clock inference time of a callable over a whole list of batches (e.g. the test set).

Records the thread count and device with the numbers; on CUDA it synchronises around each batch.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import torch


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor found in a tensor, list, tuple or dict (depth first); None if there is none."""
    if isinstance(obj, torch.Tensor):
        return obj
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def _device_of(batches: Sequence[Any], device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    tensor = first_tensor(batches[0]) if len(batches) else None
    return tensor.device if tensor is not None else torch.device("cpu")


def device_name(device: torch.device) -> str:
    """"cpu", or the CUDA device's marketing name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def inference_time(fn: Callable[[Any], Any], batches: Sequence[Any], threads: int, warmup: int = 1,
                   device: str | torch.device | None = None) -> dict:
    """Time ``fn(batch)`` for every batch, under no_grad, with torch.set_num_threads(threads).

    ``warmup`` untimed calls on the first batch come first (allocator and kernel caches). The device
    is taken from the first tensor in the first batch unless given. The previous thread count is
    restored afterwards. Returns {"seconds": sum over batches, "per_batch_ms": median,
    "threads", "batches", "warmup", "device"}."""
    if threads < 1:
        raise ValueError(f"inference_time: threads must be >= 1, got {threads}")
    if not len(batches):
        raise ValueError("inference_time: batches is empty")
    dev = _device_of(batches, device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for _ in range(warmup):
                fn(batches[0])
            sync()
            times = []
            for batch in batches:
                start = time.perf_counter()
                fn(batch)
                sync()
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {"seconds": float(sum(times)), "per_batch_ms": 1000.0 * statistics.median(times),
            "threads": threads, "batches": len(times), "warmup": warmup, "device": device_name(dev)}
