"""Leave-one-out evaluation of a sequential model under one or more candidate protocols.

The model is run once per batch; every protocol ranks the target from that one score matrix.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from recarch.data.sequences import SequenceDataset, windows
from recarch.devices import move
from recarch.evaluation.candidates import PROTOCOLS, Candidates, SplitView, make_candidates, split_view
from recarch.evaluation.metrics import metrics_from_ranks, rank_of_target
from recarch.modes import eval_mode

Tensor = torch.Tensor
SCORE_BYTES = 512 * 2**20  # the float32 scores of one evaluation batch, twice (recarch.evaluation.Evaluator)


def full_ranks(
    scores: Tensor, targets: Tensor, hist_rows: Tensor, hist_items: Tensor, mask_history: bool
) -> Tensor:
    """(B,) rank of ``targets`` among all items 1..I of ``scores`` (B, I+1).

    Column 0 (padding) never counts; with ``mask_history`` the (row, item) pairs ``hist_rows``,
    ``hist_items`` do not count either, except the target itself, which is never masked."""
    targets = targets.reshape(-1, 1)
    masked = scores.clone()
    kept = masked.gather(1, targets)
    masked[:, 0] = float("-inf")
    if mask_history and hist_rows.numel():
        minus_inf = torch.tensor(float("-inf"), dtype=masked.dtype, device=masked.device)
        masked.index_put_((hist_rows, hist_items), minus_inf)
    masked.scatter_(1, targets, kept)  # a target seen before stays a candidate
    return rank_of_target(masked, targets.squeeze(1))


def sampled_ranks(scores: Tensor, columns: Tensor) -> Tensor:
    """(B,) rank of column 0 among the candidate items ``columns`` (B, C) gathered from ``scores``."""
    return rank_of_target(scores.gather(1, columns), 0)


class Evaluator:
    """Evaluates models on one dataset's valid/test split; sampled candidates are drawn once per
    (split, protocol) and kept, so every model and epoch is ranked against the same negatives."""

    def __init__(
        self,
        dataset: SequenceDataset,
        max_len: int,
        protocols: Sequence[str] = ("pop100", "uni100", "full"),
        ks: Iterable[int] = (5, 10, 20),
        batch_size: int = 512,
        seed: int = 2024,
        mask_history: bool = True,
    ) -> None:
        if max_len < 1 or batch_size < 1:
            raise ValueError(f"max_len and batch_size: expected >= 1, got {max_len} and {batch_size}")
        self.dataset = dataset
        self.max_len = int(max_len)
        self.protocols = self._check(protocols)
        self.ks = tuple(int(k) for k in ks)
        # rows per batch: at most ``batch_size``, and few enough that a batch's score matrix and the
        # masked copy full ranking makes of it stay within SCORE_BYTES, however large the catalogue
        self.batch_size = max(1, min(int(batch_size), SCORE_BYTES // (8 * (dataset.num_items + 1))))
        self.seed = int(seed)
        self.mask_history = bool(mask_history)
        self._views: Dict[str, SplitView] = {}
        self._candidates: Dict[Tuple[str, str], Candidates] = {}

    @staticmethod
    def _check(protocols: Sequence[str]) -> Tuple[str, ...]:
        if isinstance(protocols, str):
            protocols = (protocols,)
        for p in protocols:
            PROTOCOLS.get(p)  # raises with a suggestion on a typo
        return tuple(protocols)

    def view(self, split: str) -> SplitView:
        if split not in self._views:
            self._views[split] = split_view(self.dataset, split)
        return self._views[split]

    def candidates(self, split: str, protocol: str) -> Candidates:
        """The (cached) candidates of ``protocol`` for ``split``."""
        key = (split, protocol)
        if key not in self._candidates:
            self._candidates[key] = make_candidates(
                protocol, self.dataset, self.view(split), self.seed, self.mask_history
            )
        return self._candidates[key]

    def prepare(self) -> "Evaluator":
        """Draw every split's candidates now, so that a protocol the data cannot serve fails before any
        training (and before a run folder exists)."""
        for split in ("valid", "test"):
            for protocol in self.protocols:
                self.candidates(split, protocol)
        return self

    def inputs(self, split: str, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """(R, N) left-padded model inputs of eval rows [start, stop): the items before the target."""
        v = self.view(split)
        sl = slice(start, stop)
        return windows(self.dataset.items, v.hist_starts[sl], v.targets_at[sl], self.max_len)

    def batch_ranks(self, scores: Tensor, split: str, protocol: str, start: int) -> Tensor:
        """(B,) ranks for eval rows [start, start+B) of ``split`` from their scores (B, I+1)."""
        v, c = self.view(split), self.candidates(split, protocol)
        stop = start + scores.shape[0]
        dev = scores.device
        if c.columns is not None:
            return sampled_ranks(scores, torch.from_numpy(c.columns[start:stop]).to(dev))
        lo, hi = v.hist_offsets[start], v.hist_offsets[stop]
        rows = torch.from_numpy(v.hist_rows[lo:hi] - start).to(dev)
        items = torch.from_numpy(v.hist_items[lo:hi]).to(dev)
        targets = torch.from_numpy(v.targets[start:stop]).to(dev)
        return full_ranks(scores, targets, rows, items, c.mask_history)

    def _protocols(self, protocols: Optional[Sequence[str]]) -> Tuple[str, ...]:
        return self.protocols if protocols is None else self._check(protocols)

    def _summary(self, ranks: Dict[str, List[Tensor]], num_rows: int) -> dict:
        out: dict = {p: metrics_from_ranks(torch.cat(r), self.ks) for p, r in ranks.items()}
        out["num_users"] = int(num_rows)
        return out

    def _check_scores(self, scores: Tensor, rows: int) -> None:
        want = (rows, self.dataset.num_items + 1)
        if tuple(scores.shape) != want:
            raise ValueError(
                f"score_last: expected scores of shape {want} (batch, num_items+1), "
                f"got {tuple(scores.shape)}"
            )

    def evaluate_scores(
        self, scores: Tensor, split: str, protocols: Optional[Sequence[str]] = None
    ) -> dict:
        """Metrics from a precomputed (R, I+1) score matrix over all eval rows of ``split``, in
        ``dataset.eval_users()`` order; same output as :meth:`evaluate`."""
        names = self._protocols(protocols)
        r = self.view(split).num_rows
        scores = torch.as_tensor(scores)
        self._check_scores(scores, r)
        ranks: Dict[str, List[Tensor]] = {p: [] for p in names}
        for a in range(0, r, self.batch_size):
            chunk = scores[a : a + self.batch_size]
            for p in names:
                ranks[p].append(self.batch_ranks(chunk, split, p, a).cpu())
        return self._summary(ranks, r)

    def evaluate(
        self, model: nn.Module, split: str, protocols: Optional[Sequence[str]] = None
    ) -> dict:
        """{"<protocol>": {"recall@K": .., "mrr@K": .., "ndcg@K": ..}, ..., "num_users": R}.

        Input for "valid" is the training part and the target the valid item; for "test" the input
        also holds the valid item and the target is the test item. The model's mode is restored."""
        names = self._protocols(protocols)
        r = self.view(split).num_rows
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        ranks: Dict[str, List[Tensor]] = {p: [] for p in names}
        with eval_mode(model), torch.no_grad():
            for a in range(0, r, self.batch_size):
                seq = move(torch.from_numpy(self.inputs(split, a, a + self.batch_size)), device)
                scores = model.score_last(seq)
                self._check_scores(scores, seq.shape[0])
                for p in names:
                    ranks[p].append(self.batch_ranks(scores, split, p, a).cpu())
        return self._summary(ranks, r)
