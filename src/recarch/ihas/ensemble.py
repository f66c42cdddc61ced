"""The exported iHAS model: the gate network routes each instance to its group's backbone.

``forward(cat, num) -> logit (B,)``: deterministic gate pattern → nearest known pattern → group →
that group's backbone (a hand-designed CTR model whose embedding is a :class:`MixedDimEmbedding`
with the group's per-field columns). With ``tables='shared'`` the groups share their embedding tables:
each field's table is as wide as the widest group needs and a group reads its first d_f columns
(:func:`~recarch.ihas.embedding.nested_tables`); any other table of the backbone (DeepFM's first order)
is one for all groups. Saved as ``ensemble.pt`` (state dict, written atomically) plus
``ensemble.json`` (schema, backbone and gate configs, blocks, per-group columns) — no pickled objects.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Literal, Sequence, Tuple

import torch
from torch import nn

from recarch import config as cfglib
from recarch.ctr.models import CTRModelConfig, build_ctr_model
from recarch.ctr.table import CTRSchema
from recarch.export import ClickProbability, export
from recarch.io import write_json_atomic
from recarch.ihas.cluster import hamming, route
from recarch.ihas.embedding import MixedDimEmbedding, nested_tables
from recarch.ihas.gates import GateConfig, Gates
from recarch.train import checkpoint


def with_mixed_embedding(model: nn.Module, schema: CTRSchema, model_cfg: CTRModelConfig,
                         columns: Sequence[Sequence[int]], tables=None) -> nn.Module:
    """``model`` (a backbone from ``build_ctr_model``) with its ``embedding`` replaced by a mixed-dimension
    one with these per-field columns (reading shared ``tables`` when given)."""
    model.embedding = MixedDimEmbedding(schema, model_cfg.embed_dim, columns, numeric=model.embedding.numeric is not None,
                                        init_std=model_cfg.init_std, tables=tables)
    return model


TableSharing = Literal["per_group", "shared"]


class IHASEnsemble(nn.Module):
    def __init__(self, schema: CTRSchema, model_cfg: CTRModelConfig, gate_cfg: GateConfig, blocks: int,
                 group_columns: Sequence[Sequence[Sequence[int]]], num_codes: int,
                 tables: TableSharing = "per_group") -> None:
        super().__init__()
        self.schema, self.model_cfg, self.gate_cfg, self.blocks = schema, model_cfg, gate_cfg, blocks
        self.group_columns = [[list(map(int, cols)) for cols in g] for g in group_columns]
        self.tables = tables
        with torch.random.fork_rng(devices=[]):  # the gates are loaded from the search model anyway
            self.gates = Gates(schema, blocks, gate_cfg)
        # Each backbone draws its weights, then (the first) the shared tables, in the order a lone mixed
        # model draws its own: one group from a seed starts as the AutoDim-like baseline of the same dims
        # would, so the two compare paired.
        dims = [[len(c) for c in g] for g in self.group_columns]
        models, shared = [], None
        for cols in self.group_columns:
            model = build_ctr_model(schema, model_cfg)
            if tables == "shared" and shared is None:
                shared = nested_tables(schema, dims, model_cfg.init_std)
            models.append(with_mixed_embedding(model, schema, model_cfg, cols, shared))
        self.models = nn.ModuleList(models)
        if tables == "shared":  # the backbone's other tables (DeepFM's first order): group 0's for all
            for model in self.models[1:]:
                for name, child in list(model.named_children()):
                    if name != "embedding" and any(isinstance(m, nn.Embedding) for m in child.modules()):
                        setattr(model, name, getattr(self.models[0], name))
        self.register_buffer("codes", torch.zeros(num_codes, schema.num_fields * blocks, dtype=torch.bool))
        self.register_buffer("code_group", torch.zeros(num_codes, dtype=torch.long))

    @torch.no_grad()
    def route(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Group index (B,) of each instance: its gate pattern's nearest known pattern's group (in one
        product while torch.export traces, so that the batch size stays symbolic)."""
        flat = self.gates.pattern(cat, num).flatten(1)
        if torch.compiler.is_exporting():
            return self.code_group[hamming(flat, self.codes).argmin(1)]
        return route(flat, self.codes, self.code_group)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Each instance's logit from its group's backbone. While torch.export traces, every group model
        also scores one padding row (row 0, dropped), so that it never sees an empty batch: the program
        then needs no branch on the group sizes, which stay symbolic (:meth:`export_program`)."""
        group = self.route(cat, num)
        out = torch.zeros(cat.shape[0], device=cat.device)
        exporting = torch.compiler.is_exporting()
        for g, model in enumerate(self.models):
            rows = torch.nonzero(group == g).flatten()
            if exporting:
                padded = torch.cat([rows, rows.new_zeros(1)])
                out = out.index_put((rows,), model(cat[padded], num[padded])[:-1].to(out.dtype))
            elif len(rows):
                out[rows] = model(cat[rows], num[rows]).to(out.dtype)
        return out

    # ---- sizes -----------------------------------------------------------------------------------
    def group_embedding_params(self) -> List[int]:
        """Per group: the embedding parameters it reads: its mixed embedding's Σ_f vocab_f · d_f plus the
        backbone's other nn.Embedding tables (e.g. DeepFM's first order), shared or not."""
        return [model.embedding.embedding_params
                + sum(m.weight.numel() for name, m in model.named_modules()
                      if isinstance(m, nn.Embedding) and not name.startswith("embedding."))
                for model in self.models]

    def gate_embedding_params(self) -> int:
        return sum(m.weight.numel() for m in self.gates.modules() if isinstance(m, nn.Embedding))

    # ---- save / load -----------------------------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        return {"schema": asdict(self.schema), "model": cfglib.to_dict(self.model_cfg),
                "gate": cfglib.to_dict(self.gate_cfg), "blocks": self.blocks,
                "group_columns": self.group_columns, "num_codes": int(self.codes.shape[0]), "tables": self.tables}

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        checkpoint.save_atomic({"model": self.state_dict()}, folder / "ensemble.pt")
        write_json_atomic(folder / "ensemble.json", self.config())

    def export_program(self, folder: Path, example: Tuple[torch.Tensor, torch.Tensor], onnx: bool = False) -> Path:
        """The ensemble as one ``torch.export`` serving program (click probability for any batch size),
        with its weights as safetensors and its config (``recarch.export``); ``example``: 2 (cat, num) rows;
        ``onnx``: also as ``model.onnx``."""
        return export(ClickProbability(self), example, folder,
                      {"kind": "ihas", "ensemble": self.config(),
                       "input": "cat (B, F) field-local ids (0 = missing/rare), num (B, D) log(1+x) features"}, onnx)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "IHASEnsemble":
        return cls(CTRSchema(**config["schema"]), cfglib.from_dict(CTRModelConfig, config["model"]),
                   cfglib.from_dict(GateConfig, config["gate"]), config["blocks"], config["group_columns"],
                   config["num_codes"], config.get("tables", "per_group"))

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "IHASEnsemble":
        folder = Path(folder)
        model = cls.from_config(json.loads((folder / "ensemble.json").read_text()))
        model.load_state_dict(checkpoint.load(folder / "ensemble.pt", device)["model"])
        return model.eval()
