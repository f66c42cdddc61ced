"""Export a trained model for serving (DESIGN.md §6): weights as safetensors, the config as JSON, and a
``torch.export`` program of a serving module — top-k items for a sequential model, click probability
for a CTR model — with a dynamic batch dimension. Files are written to a temporary folder, then renamed.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors.torch import save_file
from torch import nn

from recarch.config import ConfigError


class TopKItems(nn.Module):
    """Sequential serving: (B, N) left-padded histories → (scores (B, k), item ids (B, k))."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, seq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        scores = self.model.score_last(seq)
        scores[:, 0] = float("-inf")  # the padding id is never recommended
        top = scores.topk(self.k, dim=-1)
        return top.values, top.indices  # a plain tuple: torch.export cannot serialise torch.return_types


class ClickProbability(nn.Module):
    """CTR serving: (cat (B, F), num (B, D)) → click probability (B,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(cat, num))


def save_onnx(program: torch.export.ExportedProgram, path: Path) -> None:
    """The exported program as ONNX (opset of torch's exporter; the batch dimension stays dynamic)."""
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ConfigError("--onnx needs onnx and onnxscript: pip install 'recarch[onnx]'") from None
    torch.onnx.export(program, dynamo=True, verbose=False).save(str(path))


def export(serving: nn.Module, example: Tuple[torch.Tensor, ...], out_dir: Path, config: Dict[str, Any],
           onnx: bool = False) -> Path:
    """Write ``model.safetensors`` (the wrapped model's weights), ``config.json``, ``program.pt2`` and,
    with ``onnx``, ``model.onnx`` (for onnxruntime and the serving stacks that load ONNX)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    serving.eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with torch.no_grad():  # serving needs no gradients (and a no_grad block inside would become a graph node)
        program = torch.export.export(serving, example, dynamic_shapes=tuple({0: batch} for _ in example))
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        state = {k: v.detach().contiguous() for k, v in serving.model.state_dict().items()}
        save_file(_untie(state), str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        torch.export.save(program, str(tmp / "program.pt2"))
        if onnx:
            save_onnx(program, tmp / "model.onnx")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_run(run_dir: Path, k: int = 10, out_dir: Optional[Path] = None, data_dir: Optional[str] = None,
               onnx: bool = False) -> Path:
    """Export a finished sequential run's best model as a top-``k`` server (default: ``run_dir/export``)."""
    from recarch import run

    cfg, _, model = run.load_run(Path(run_dir), data_dir)
    example = (torch.ones((2, cfg.model.max_len), dtype=torch.long),)
    return export(TopKItems(model, k), example, Path(out_dir or Path(run_dir) / "export"),
                  {"kind": "sequential", "model": cfg.model.__dict__, "k": k,
                   "input": "item ids (B, max_len), left-padded with 0, ids as in the run's items.tsv"}, onnx)


def export_ctr_run(run_dir: Path, out_dir: Optional[Path] = None, data_dir: Optional[str] = None,
                   onnx: bool = False) -> Path:
    """Export a finished CTR run's best model as a click-probability server (default: ``run_dir/export``)."""
    import numpy as np

    from recarch.config import to_dict
    from recarch.ctr.run import load_ctr_run

    cfg, data, model = load_ctr_run(Path(run_dir), data_dir)
    example = (torch.from_numpy(np.array(data.test.cat[:2], dtype=np.int64)),
               torch.from_numpy(np.array(data.test.num[:2], dtype=np.float32)))
    return export(ClickProbability(model), example, Path(out_dir or Path(run_dir) / "export"),
                  {"kind": "ctr", "model": to_dict(cfg.model), "schema": data.schema.__dict__,
                   "input": "cat (B, F) field-local ids (0 = missing/rare), num (B, D) log(1+x) features"}, onnx)


def _untie(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied weights): store each one as its own copy."""
    seen, out = set(), {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def load_program(out_dir: Path):
    """The exported serving program; call ``.module()(*inputs)``."""
    return torch.export.load(str(Path(out_dir) / "program.pt2"))
