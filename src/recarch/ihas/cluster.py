"""iHAS clustering stage: deterministic gate patterns → groups of instances → each group's dimensions.

Modes (``cluster_mode``):
* ``embeddings`` — k-means on the masked embeddings (the search model's categorical tokens times the
  deterministic gates, flattened): the paper's choice (DESIGN.md §5);
* ``patterns`` — k-means on the 0/1 patterns (F·K values per instance);
* ``unique`` — one group per distinct pattern, the ``k`` most frequent kept and every rarer pattern
  joined to the nearest kept one (Hamming distance, ties to the more frequent): for when the
  patterns are few.

k-means: Lloyd's algorithm with k-means++ seeding from a seeded ``torch.Generator`` (squared
Euclidean distance; an empty cluster is re-seeded with the point farthest from its centre).

A group's dimension for field f: the blocks kept (gate on) by at least half of its members — a
majority vote; ties keep the block, as dropping it costs accuracy and keeping it only parameters.

Routing. Serving must place an instance in a group from what the gate network computes, and the
masked embeddings need the full search-stage tables (100 % of the baseline's embedding parameters),
so the router works on patterns alone: it keeps the training set's most frequent distinct patterns
(at most ``max_codes``), each mapped to the group most of its training instances fell in, and sends
an instance to the group of the nearest kept pattern (Hamming distance, ties to the more frequent).
In ``patterns`` and ``unique`` modes this reproduces the clustering exactly for every seen pattern; in
``embeddings`` mode instances with one pattern but different k-means clusters follow their pattern's
majority (the agreement is reported). Every split — training included — is assigned by this router,
so retraining sees exactly the instances each group model serves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch


@dataclass
class Patterns:
    """The deterministic gate patterns of N rows, each distinct pattern stored once: what clustering
    needs, in 8 bytes a row (the code index) instead of a row's F·K pattern."""

    codes: torch.Tensor  # (P, F, K) bool, distinct, in torch.unique's (lexicographic) order
    inverse: torch.Tensor  # (N,) long: each row's code

    def __len__(self) -> int:
        return len(self.inverse)

    @property
    def bits(self) -> torch.Tensor:
        """(P, F·K) bool: the codes flattened."""
        return self.codes.flatten(1)

    @property
    def counts(self) -> torch.Tensor:
        return torch.bincount(self.inverse, minlength=len(self.codes))

    def rows(self, index: Optional[torch.Tensor] = None, chunk: int = 65536) -> Iterable[torch.Tensor]:
        """The flattened patterns (n, F·K) of the rows ``index`` (None: all), in chunks."""
        inverse = self.inverse if index is None else self.inverse[index]
        return (self.bits[part] for part in inverse.split(chunk))

    @classmethod
    def of(cls, patterns: torch.Tensor) -> "Patterns":
        """From per-row patterns (N, F, K) bool."""
        codes, inverse = torch.unique(patterns.bool().flatten(1), dim=0, return_inverse=True)
        return cls(codes.view(-1, *patterns.shape[1:]), inverse)


class PatternCollector:
    """Builds :class:`Patterns` batch by batch, holding only the distinct patterns and the row codes."""

    def __init__(self) -> None:
        self.index: Dict[bytes, int] = {}
        self.codes: List[torch.Tensor] = []
        self.parts: List[torch.Tensor] = []

    def add(self, patterns: torch.Tensor) -> None:
        """Append a batch's patterns (B, F, K) bool."""
        found, inverse = torch.unique(patterns.flatten(1), dim=0, return_inverse=True)
        ids = []
        for code in found:
            key = code.numpy().tobytes()
            if key not in self.index:
                self.index[key] = len(self.codes)
                self.codes.append(code.view(patterns.shape[1:]))
            ids.append(self.index[key])
        self.parts.append(torch.tensor(ids, dtype=torch.long)[inverse])

    def result(self) -> Patterns:
        """The patterns of every row added, with the codes in torch.unique's order."""
        codes, order = torch.unique(torch.stack(self.codes).flatten(1), dim=0, return_inverse=True)
        return Patterns(codes.view(-1, *self.codes[0].shape), order[torch.cat(self.parts)])


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100, tol: float = 1e-6
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(labels (N,), centres (k, d)) of Lloyd's k-means with k-means++ seeding; deterministic for a seed."""
    x = x.float()
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: need 1 ≤ k ≤ number of points ({n}), got k={k}")
    gen = torch.Generator().manual_seed(seed)
    centres = torch.empty(k, x.shape[1])
    centres[0] = x[torch.randint(n, (1,), generator=gen)]
    nearest = _sqdist(x, centres[:1]).squeeze(1)
    for j in range(1, k):
        total = float(nearest.sum())
        if total <= 0:  # fewer distinct points than k: duplicate centres, emptied below
            idx = torch.randint(n, (1,), generator=gen)
        else:
            idx = torch.multinomial(nearest / total, 1, generator=gen)
        centres[j] = x[idx]
        nearest = torch.minimum(nearest, _sqdist(x, centres[j:j + 1]).squeeze(1))
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        dist = _sqdist(x, centres)
        new = dist.argmin(1)
        counts = torch.bincount(new, minlength=k)
        for j in torch.nonzero(counts == 0).flatten().tolist():  # re-seed an empty cluster
            far = int(dist.gather(1, new[:, None]).squeeze(1).argmax())
            centres[j], new[far] = x[far], j
            dist[far] = 0
            counts = torch.bincount(new, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, new, x)
        moved = sums / counts.clamp(min=1).unsqueeze(1).float()
        shift = float((moved - centres).pow(2).sum())
        centres = moved
        if torch.equal(new, labels) or shift <= tol:
            labels = new
            break
        labels = new
    return _sqdist(x, centres).argmin(1), centres


def _sqdist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)).clamp(min=0)


def unique_groups(patterns: Patterns, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(labels (N,), kept patterns (G, F·K)): one group per distinct pattern, the ``k`` most frequent
    kept (k ≤ 0: all), the rest joined to the nearest kept one."""
    codes, inverse, counts = patterns.bits, patterns.inverse, patterns.counts
    order = torch.argsort(counts, descending=True, stable=True)
    kept = order[:k] if k > 0 else order
    rank = torch.full((len(codes),), -1, dtype=torch.long)
    rank[kept] = torch.arange(len(kept))
    unmatched = torch.nonzero(rank < 0).flatten()
    if len(unmatched):
        rank[unmatched] = hamming(codes[unmatched], codes[kept]).argmin(1)
    return rank[inverse], codes[kept]


def hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) Hamming distances between rows of two 0/1 matrices; argmin's first index wins ties."""
    a, b = a.float(), b.float()
    return a.sum(1, keepdim=True) + b.sum(1) - 2 * a @ b.T


def group_sums(labels: torch.Tensor, patterns: Patterns, groups: int) -> torch.Tensor:
    """(G, F·K): per group, the sum of its rows' 0/1 patterns — the rows of each (group, code) pair
    counted, then times the codes (integer sums in float64: exact)."""
    joint = torch.zeros(groups, len(patterns.codes), dtype=torch.float64)
    joint.index_put_((labels, patterns.inverse), torch.ones(len(labels), dtype=torch.float64), accumulate=True)
    return (joint @ patterns.bits.double()).float()


def group_votes(patterns: Patterns, labels: torch.Tensor, groups: int) -> torch.Tensor:
    """(G, F, K): the fraction of each group's members whose pattern keeps the block."""
    sums = group_sums(labels, patterns, groups)
    counts = torch.bincount(labels, minlength=groups).clamp(min=1).unsqueeze(1)
    return (sums / counts).view(groups, *patterns.codes.shape[1:])


def group_blocks(patterns: Patterns, labels: torch.Tensor, groups: int) -> torch.Tensor:
    """(G, F, K) bool: block kept when at least half of the group's members keep it."""
    return group_votes(patterns, labels, groups) >= 0.5


@dataclass
class Router:
    """Nearest known pattern → its group (see the module's docstring)."""
    codes: torch.Tensor  # (P, F·K) bool, most frequent first
    code_group: torch.Tensor  # (P,) long

    def __call__(self, patterns: torch.Tensor) -> torch.Tensor:
        """The group of each row of ``patterns`` (B, F, K)."""
        return route(patterns.flatten(1), self.codes, self.code_group)

    def assign(self, patterns: Patterns) -> torch.Tensor:
        """The group of each row of ``patterns``: each distinct pattern routed once."""
        return route(patterns.bits, self.codes, self.code_group)[patterns.inverse]


def route(flat_patterns: torch.Tensor, codes: torch.Tensor, code_group: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    out = [code_group[hamming(part, codes).argmin(1)] for part in flat_patterns.split(chunk)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def build_router(patterns: Patterns, labels: torch.Tensor, groups: int, max_codes: int = 4096) -> Router:
    """Distinct training patterns (most frequent first, at most ``max_codes``), each to its members'
    most common group."""
    codes, inverse, counts = patterns.bits, patterns.inverse, patterns.counts
    votes = torch.zeros(len(codes), groups, dtype=torch.long)
    votes.index_put_((inverse, labels), torch.ones_like(labels), accumulate=True)
    order = torch.argsort(counts, descending=True, stable=True)[:max_codes]
    return Router(codes[order], votes[order].argmax(1))


@dataclass
class Clustering:
    labels: torch.Tensor  # (N,) router group of each training instance (renumbered, no empty group)
    blocks: torch.Tensor  # (G, F, K) bool
    router: Router
    cluster_labels: torch.Tensor  # (N,) the clustering's own labels (before routing and merging)
    info: Dict


Embeddings = Callable[[Optional[torch.Tensor]], Iterable[torch.Tensor]]


def cluster(patterns: Patterns, mode: str, k: int, embeddings: Optional[Embeddings] = None, seed: int = 0,
            iters: int = 100, max_codes: int = 4096, sample: int = 0, min_fraction: float = 0.0) -> Clustering:
    """Group the training instances by their deterministic ``patterns``.

    ``embeddings`` (mode ``embeddings``) gives the rows' masked embeddings batch by batch: those of the
    given row indices in their order, or of every row in order for ``None``. ``sample`` > 0 fits k-means
    on that many random rows and assigns every row to the nearest centre batch by batch, so only the
    sample is held at once; groups with fewer than ``min_fraction`` of the instances are merged into the
    nearest larger group (by mean pattern) so that every retrained model has data to learn and validate on."""
    n = len(patterns)
    if mode == "unique":
        labels, _ = unique_groups(patterns, k)
    elif mode in ("patterns", "embeddings"):
        source = patterns.rows if mode == "patterns" else embeddings
        if source is None:
            raise ValueError("cluster mode 'embeddings' needs the masked embeddings")
        kk = min(k, n)
        if 0 < sample < n:
            rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:sample]
            _, centres = kmeans(torch.cat(list(source(rows))).float(), kk, seed, iters)
            labels = torch.cat([_sqdist(part, centres).argmin(1)
                                for batch in source(None) for part in batch.float().split(65536)])
        else:
            labels, _ = kmeans(torch.cat(list(source(None))).float(), kk, seed, iters)
    else:
        raise ValueError(f"unknown cluster mode {mode!r}; expected embeddings, patterns or unique")
    labels = _merge_small(labels, patterns, min_fraction)
    groups = int(labels.max()) + 1
    router = build_router(patterns, labels, groups, max_codes)
    routed = router.assign(patterns)
    agreement = float((routed == labels).float().mean())
    for _ in range(groups):  # a routed group below min_fraction joins its nearest larger one
        merged = _merge_small(routed, patterns, min_fraction)
        if torch.equal(merged, routed):
            break
        router = build_router(patterns, merged, int(merged.max()) + 1, max_codes)
        routed = router.assign(patterns)
    groups = int(routed.max()) + 1
    # the router may leave a group empty (embeddings mode): renumber by routed groups
    present = torch.unique(routed)
    remap = torch.full((groups,), -1, dtype=torch.long)
    remap[present] = torch.arange(len(present))
    routed, router = remap[routed], Router(router.codes, remap[router.code_group])
    blocks = group_blocks(patterns, routed, len(present))
    info = {"mode": mode, "k": k, "num_groups": len(present), "distinct_patterns": len(patterns.codes),
            "router_codes": int(len(router.codes)), "router_agreement": agreement}
    return Clustering(routed, blocks, router, labels, info)


def _merge_small(labels: torch.Tensor, patterns: Patterns, min_fraction: float) -> torch.Tensor:
    """Merge groups below ``min_fraction`` of the rows into the nearest (mean-pattern) big group; renumber 0.."""
    counts = torch.bincount(labels)
    big = torch.nonzero(counts >= max(min_fraction * len(labels), 1)).flatten()
    if len(big) == 0:
        big = counts.argmax().view(1)
    means = group_sums(labels, patterns, len(counts)) / counts.clamp(min=1).unsqueeze(1)
    target = torch.arange(len(counts))
    small = torch.tensor([g for g in range(len(counts)) if g not in set(big.tolist())], dtype=torch.long)
    if len(small):
        target[small] = big[_sqdist(means[small], means[big]).argmin(1)]
    present = torch.unique(target[labels])
    remap = torch.full((len(counts),), -1, dtype=torch.long)
    remap[present] = torch.arange(len(present))
    return remap[target[labels]]


def group_dims(blocks: torch.Tensor, block_size: int) -> List[List[int]]:
    """Per group, per field: the kept dimension count."""
    return (blocks.sum(-1) * block_size).tolist()


def merge_identical(clustering: Clustering, key: torch.Tensor) -> Clustering:
    """Merge groups whose ``key`` rows (G, …) are equal — e.g. their kept blocks, or their per-field
    dimensions when every group model is trained from scratch on the same data, where such groups
    would retrain the very same model. The merged group keeps the first member's blocks."""
    _, inverse = torch.unique(key.flatten(1), dim=0, return_inverse=True)
    if len(inverse.unique()) == len(inverse):
        return clustering
    first = {}
    for g, u in enumerate(inverse.tolist()):
        first.setdefault(u, g)
    order = sorted(first.values())  # new group j = old group order[j] (and its duplicates)
    new_of_old = torch.tensor([order.index(first[u]) for u in inverse.tolist()])
    router = Router(clustering.router.codes, new_of_old[clustering.router.code_group])
    info = {**clustering.info, "num_groups": len(order), "merged_identical": len(inverse) - len(order)}
    return Clustering(new_of_old[clustering.labels], clustering.blocks[order], router, clustering.cluster_labels, info)
