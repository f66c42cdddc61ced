"""Independent trainings through one interface: in this process (default) or as Ray tasks.

``make_executor(cfg).map(fn, jobs)`` calls ``fn(job)`` for every job and returns the results in the
jobs' order. ``local`` runs them one after another here. ``ray`` submits each as a Ray task needing
``cpus_per_job`` CPUs to the cluster at ``address`` (``"auto"``, ``ray://head:10001``, or
``$RAY_ADDRESS``), or to a local one it starts with ``num_cpus`` CPUs; every worker must see the same
files (the package, the data root and the run folder: a shared filesystem on a multi-node cluster).
``fn`` and the jobs must be picklable (module-level functions, plain data). A job computes the same
result either way: trainings here are seeded and write only under their own folder. ``in_process``
says whether jobs run in the caller's memory (so a caller may hand them data it has loaded, which a
Ray task instead reads from the data root's cache).

Ray is an optional extra (``pip install 'recarch[ray]'``); asking for it without Ray installed is a
clear error before any work starts. Data-parallel training of one model stays on ``torchrun``.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable, List, Literal, Optional, Sequence

from recarch.config import ConfigError
from recarch.registry import Registry

EXECUTORS: Registry = Registry("executor")


@dataclass
class ExecutorConfig:
    kind: Literal["local", "ray"] = "local"
    address: Optional[str] = None  # ray: the cluster to join (None: $RAY_ADDRESS, else start a local one)
    num_cpus: Optional[int] = None  # ray, local cluster only: CPUs it may use (None: all)
    cpus_per_job: int = 1  # ray: CPUs each training reserves (set it to the training's threads)

    def validate(self) -> None:
        if self.cpus_per_job < 1 or (self.num_cpus is not None and self.num_cpus < 1):
            raise ConfigError("executor.cpus_per_job and executor.num_cpus must be ≥ 1")
        if self.kind == "ray" and importlib.util.find_spec("ray") is None:
            raise ConfigError("executor.kind: ray needs Ray; install it with pip install 'recarch[ray]'")


@EXECUTORS.register("local")
class InProcess:
    in_process = True

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> List[Any]:
        return [fn(job) for job in jobs]


@EXECUTORS.register("ray")
class RayTasks:
    in_process = False

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> List[Any]:
        import ray

        if not jobs:
            return []
        started = not ray.is_initialized()
        if started:
            joining = self.cfg.address or os.environ.get("RAY_ADDRESS")
            ray.init(address=self.cfg.address, num_cpus=None if joining else self.cfg.num_cpus,
                     include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=self.cfg.cpus_per_job, max_retries=0)(fn)
            return ray.get([task.remote(job) for job in jobs])
        finally:
            if started:
                ray.shutdown()


def make_executor(cfg: ExecutorConfig):
    return EXECUTORS.get(cfg.kind)(cfg)
