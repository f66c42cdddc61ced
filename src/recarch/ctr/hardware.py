"""Cost of a CTR network on hardware: counted FLOPs, a measured CPU latency table per operator, and an
analytic processing-in-memory (PIM) model with a placement (which embedding tables and operators run
in memory).

The PIM model (parameters in a YAML file, :class:`HardwareConfig`) works per batch of ``batch`` samples
and per operator, roofline style:

    time(op on unit u)   = max(2·MACs·batch / peak_u, bytes_u / bandwidth_u)
    energy(op on unit u) = MACs·batch·e_mac_u + bytes_u·e_byte_u

where bytes_u are the operator's weights (read once per batch) plus its input and output activations
(per sample). An operator or embedding table placed in memory also sends its input and output
activations over the host–PIM link (time bytes/link bandwidth, energy bytes·e_link): the model assumes
no operator fusion across the link and no overlap between units, so the network's latency is the sum
over operators. Everything placed in memory must fit in ``pim.capacity_mb``. These assumptions, the
bandwidth ratio pim/host and the per-byte energies drive the result more than anything else.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Tuple

import torch
from torch import nn

from recarch import config as cfglib
from recarch.config import ConfigError
from recarch.cost.flops import count_flops
from recarch.ctr.space import BINARY_OPS
from recarch.modes import eval_mode


@dataclass
class UnitConfig:
    gflops: float  # peak compute, GFLOP/s
    bandwidth_gbs: float  # memory bandwidth seen by this unit, GB/s
    energy_pj_per_mac: float
    energy_pj_per_byte: float  # memory access


@dataclass
class HardwareConfig:
    """Defaults: a DDR4 server host and a rank-level PIM (UPMEM/RecNMP-like) — illustrative numbers."""

    host: UnitConfig = field(default_factory=lambda: UnitConfig(gflops=200.0, bandwidth_gbs=25.6,
                                                               energy_pj_per_mac=2.0, energy_pj_per_byte=20.0))
    pim: UnitConfig = field(default_factory=lambda: UnitConfig(gflops=50.0, bandwidth_gbs=200.0,
                                                              energy_pj_per_mac=1.0, energy_pj_per_byte=3.0))
    link_gbs: float = 12.8  # host ↔ PIM transfer bandwidth
    link_pj_per_byte: float = 20.0
    pim_capacity_mb: float = 64.0
    batch: int = 256
    bytes_per_value: int = 4

    def validate(self) -> None:
        for name, unit in (("host", self.host), ("pim", self.pim)):
            if min(unit.gflops, unit.bandwidth_gbs) <= 0 or min(unit.energy_pj_per_mac, unit.energy_pj_per_byte) < 0:
                raise ConfigError(f"{name}: gflops and bandwidth_gbs must be > 0, energies ≥ 0")
        if self.link_gbs <= 0 or self.pim_capacity_mb < 0 or self.batch < 1:
            raise ConfigError("link_gbs must be > 0, pim_capacity_mb ≥ 0, batch ≥ 1")


def load_hardware(path: Optional[str]) -> HardwareConfig:
    return cfglib.load(HardwareConfig, [path] if path else [])


@dataclass(frozen=True)
class OpCost:
    """One placeable unit of work, per sample: multiply-adds, weight bytes, activation bytes in and out."""

    name: str  # "emb.<field>", "block<i>.dense", "block<i>.sparse", "head"
    macs: float
    weight_bytes: float
    in_bytes: float
    out_bytes: float
    lookups: bool = False  # an embedding table: reads one row per sample, not its whole weight


def network_ops(net: nn.Module, example: tuple, bytes_per_value: int = 4) -> List[OpCost]:
    """Per-operator costs of a plain NASRec network (recarch.ctr.supernet.NASRecNet) for one sample:
    MACs from torch's FLOP counter (FLOPs / 2), weights from the parameters, activations from the shapes."""
    counts = count_flops(net, example)["by_module"]
    root = type(net).__name__
    ops: List[OpCost] = []
    d = net.space.embed_dim
    for name, size in zip(net.schema.fields, net.schema.vocab_sizes):
        ops.append(OpCost(f"emb.{name}", 0.0, size * d * bytes_per_value, bytes_per_value,
                          d * bytes_per_value, lookups=True))
    raw = len(net.schema.numeric) + net.schema.num_fields * d
    dense_w = [raw] + [b.dense_dim for b in net.arch.blocks]
    tokens_w = [net.schema.num_fields] + [b.sparse_dim for b in net.arch.blocks]
    for i, (block, b) in enumerate(zip(net.blocks, net.arch.blocks)):
        parts = net.parts.get(i + 1)
        if parts is None:  # a dead block is not computed
            continue
        x_in = sum(dense_w[j] for j in set(b.dense_in) | set(b.binary_in if b.dense_op in BINARY_OPS else []))
        s_in = sum(tokens_w[j] for j in b.sparse_in) * d
        for part, module in (("dense", block.dense), ("sparse", block.sparse)):
            if not getattr(parts, part):  # nor is a dead part
                continue
            flops = counts.get(f"{root}.blocks.{i}.{part}.{b.dense_op if part == 'dense' else b.sparse_op}", 0)
            if part == "dense":  # the mergers run with the dense operator (they need its output)
                flops += counts.get(f"{root}.blocks.{i}.fm", 0) + counts.get(f"{root}.blocks.{i}.to_sparse", 0)
                params = sum(p.numel() for m in (module, block.fm, block.to_sparse) if m is not None for p in m.parameters())
                io = (x_in + (s_in if b.dense_op == "dot" else 0), b.dense_dim)
            else:
                params = sum(p.numel() for p in module.parameters())
                io = (s_in, b.sparse_dim * d)
            ops.append(OpCost(f"block{i + 1}.{part}", flops / 2, params * bytes_per_value,
                              io[0] * bytes_per_value, io[1] * bytes_per_value))
    ops.append(OpCost("head", counts.get(f"{root}.head", 0) / 2, sum(p.numel() for p in net.head.parameters()) * bytes_per_value,
                      dense_w[-1] * bytes_per_value, bytes_per_value))
    return ops


def op_cost(op: OpCost, in_memory: bool, hw: HardwareConfig) -> Tuple[float, float]:
    """(latency s, energy J) of one operator for a batch, on the host or in memory (link included)."""
    unit, batch = (hw.pim if in_memory else hw.host), hw.batch
    weight = op.out_bytes * batch if op.lookups else op.weight_bytes
    moved = weight + (op.in_bytes + op.out_bytes) * batch
    latency = max(2 * op.macs * batch / (unit.gflops * 1e9), moved / (unit.bandwidth_gbs * 1e9))
    energy = (op.macs * batch * unit.energy_pj_per_mac + moved * unit.energy_pj_per_byte) * 1e-12
    if in_memory:
        link = (op.in_bytes + op.out_bytes) * batch
        latency += link / (hw.link_gbs * 1e9)
        energy += link * hw.link_pj_per_byte * 1e-12
    return latency, energy


def pim_cost(ops: List[OpCost], placement: FrozenSet[str], hw: HardwareConfig) -> Dict[str, float]:
    """Latency (s per batch), energy (J per batch) and PIM memory use of ``ops`` under ``placement``;
    ``feasible`` is False when the placed weights exceed the PIM capacity."""
    costs = [op_cost(op, op.name in placement, hw) for op in ops]
    pim_bytes = sum(op.weight_bytes for op in ops if op.name in placement)
    return {"latency_s": sum(c[0] for c in costs), "energy_j": sum(c[1] for c in costs), "pim_mb": pim_bytes / 2 ** 20,
            "feasible": pim_bytes <= hw.pim_capacity_mb * 2 ** 20}


def best_placement(ops: List[OpCost], hw: HardwareConfig) -> FrozenSet[str]:
    """The placement minimising energy/E_host + latency/L_host (both relative to running everything on
    the host): the objective is a sum over operators, so each operator goes in memory when that lowers
    its own term, the largest gains per byte first while the PIM capacity lasts."""
    host = [op_cost(op, False, hw) for op in ops]
    total_l, total_e = sum(c[0] for c in host), sum(c[1] for c in host)
    gains = []
    for op, (l_host, e_host) in zip(ops, host):
        l_pim, e_pim = op_cost(op, True, hw)
        gain = (l_host - l_pim) / total_l + (e_host - e_pim) / total_e
        if gain > 0:
            gains.append((gain / max(op.weight_bytes, 1.0), op))
    chosen, used = set(), 0.0
    for _, op in sorted(gains, key=lambda g: -g[0]):
        if used + op.weight_bytes <= hw.pim_capacity_mb * 2 ** 20:
            chosen.add(op.name)
            used += op.weight_bytes
    return frozenset(chosen)


def embeddings_in_memory(ops: List[OpCost], hw: HardwareConfig) -> FrozenSet[str]:
    """The usual hand placement (RecNMP-style): embedding tables in memory, largest first, while they
    fit; every dense operator on the host."""
    chosen, used = set(), 0.0
    for op in sorted((o for o in ops if o.lookups), key=lambda o: -o.weight_bytes):
        if used + op.weight_bytes <= hw.pim_capacity_mb * 2 ** 20:
            chosen.add(op.name)
            used += op.weight_bytes
    return frozenset(chosen)


class LatencyTable:
    """Measured CPU latency (ms per batch) of each block operator, keyed by its module's shapes, so an
    operator is timed once per distinct size on this machine; saved as JSON with the run."""

    def __init__(self, batch: int, threads: int = 1, repeats: int = 5) -> None:
        self.batch, self.threads, self.repeats = batch, threads, repeats
        self.table: Dict[str, float] = {}

    @staticmethod
    def _key(module: nn.Module, shapes) -> str:
        params = ",".join("x".join(map(str, p.shape)) for p in module.parameters())
        return f"{type(module).__name__}[{params}]<-{shapes}"

    def measure(self, module: nn.Module, fn, shapes) -> float:
        key = self._key(module, shapes)
        if key not in self.table:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.no_grad():
                    fn()
                    times = []
                    for _ in range(self.repeats):
                        start = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - start)
            finally:
                torch.set_num_threads(previous)
            self.table[key] = 1000 * sorted(times)[len(times) // 2]
        return self.table[key]

    def network_ms(self, net: nn.Module) -> float:
        """Sum of the measured inference latencies of the network's blocks (embedding lookups and head
        included), in eval mode."""
        with eval_mode(net):
            return self._network_ms(net)

    def _network_ms(self, net: nn.Module) -> float:
        from recarch.ctr.supernet import gather, raw_inputs

        schema = net.schema
        cat = torch.zeros(self.batch, schema.num_fields, dtype=torch.long)
        num = torch.zeros(self.batch, len(schema.numeric))
        outputs = [raw_inputs(net.embedding, cat, num)]
        total = self.measure(net.embedding, lambda: raw_inputs(net.embedding, cat, num), (self.batch,))
        for i, (block, b) in enumerate(zip(net.blocks, net.arch.blocks), 1):
            parts = net.parts.get(i)
            if parts is None:
                outputs.append(None)
                continue
            c = gather(outputs, b, parts)
            shapes = (*(None if t is None else tuple(t.shape) for t in (c.x, c.y, c.s)), b.dense_op, b.sparse_op, parts)
            total += self.measure(block, lambda: block(c, b, parts), shapes)
            with torch.no_grad():
                outputs.append(block(c, b, parts))
        return total

    def save(self, path: Path) -> None:
        from recarch.io import write_json_atomic

        write_json_atomic(path, {"batch": self.batch, "threads": self.threads, "ms": self.table})
