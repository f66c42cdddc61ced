"""The GPU check: train, bf16, search, export and a one-process NCCL run on the machine's GPU, each step
timed beside the same step on its CPU; under 10 minutes on one GPU (``benchmarks/gpu_check.sh``).

Steps, each a ``recarch`` command in its own process on ``--device`` (cuda when there is one):

* ``train``: the tuned recipe (configs/sasrec-plus.yaml, its ml-1m file) for ``--epochs`` epochs
  (**capped**: a speed check, not an accuracy claim): seconds per epoch, GPU and CPU;
* ``train-bf16``: the same with ``train.precision=bf16``;
* ``search``: EASRec's quick preset on ml-100k, short;
* ``export``: the trained model as torch.export and ONNX (when onnxscript is installed);
* ``ddp``: ``torchrun --nproc_per_node 1`` training, its gradients reduced through NCCL (gloo on CPU).

Without CUDA (and with ``--quick``: ml-100k and tiny settings, as CI runs it) every step runs on the CPU
alone. Writes ``benchmarks/results/gpu-check-<device>.json`` (device name, torch, commit).
Example: ``python benchmarks/gpu_check.py`` on the GPU machine; ``python benchmarks/gpu_check.py --quick``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from recarch.cost import machine_info
from recarch.io import write_json_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _sets(*pairs: str) -> List[str]:
    return [x for p in pairs for x in ("--set", p)]


def recarch(args: List[str], data_dir: str, launcher: List[str] = ()) -> float:
    """Seconds ``recarch args`` took (an error stops the check with the command's output)."""
    cmd = [*(launcher or [sys.executable]), "-m", "recarch.cli", "--data-dir", data_dir, *args]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"gpu_check: {' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def only_run(folder: Path) -> Path:
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    return run_dir


def seconds_per_epoch(run_dir: Path) -> float:
    history = json.loads((run_dir / "history.json").read_text())
    return sum(h["seconds"] + h["valid_seconds"] for h in history) / len(history)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="ml-100k and tiny settings (the CPU fallback CI runs)")
    ap.add_argument("--data-dir", default=os.environ.get("RECARCH_DATA"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda, but torch sees no GPU")
    devices = [args.device] + (["cpu"] if args.device != "cpu" else [])
    if args.quick:
        recipe = ["train", "--dataset", "ml-100k", *_sets("model.max_len=20", "model.hidden_size=16",
                                                         "model.inner_size=16", "cost.enabled=false")]
    else:
        recipe = ["train", "--config", "configs/sasrec-plus.yaml", "--config", "configs/sasrec-plus-ml-1m.yaml",
                  "--dataset", "ml-1m", *_sets("cost.enabled=false")]
    epochs = _sets(f"train.epochs={1 if args.quick else args.epochs}", "train.patience=0", "train.progress=false")
    steps: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        for device in devices:
            on = _sets(f"train.device={device}")
            for name, extra in (("train", []), ("train-bf16", _sets("train.precision=bf16"))):
                folder = out / f"{name}-{device}"
                wall = recarch([*recipe, *epochs, *on, *extra, "--out-dir", str(folder)], args.data_dir)
                steps.setdefault(name, {})[device] = seconds_per_epoch(only_run(folder))
                steps.setdefault(f"{name} wall s", {})[device] = wall
            search = ["search", "--config", "configs/easrec-quick.yaml", *_sets(
                "train.epochs=2", "retrain.epochs=2", "cost.enabled=false", "baseline=false", f"train.device={device}",
                f"retrain.device={device}", *(["model.max_len=20", "model.hidden_size=16"] if args.quick else []))]
            steps.setdefault("search wall s", {})[device] = recarch([*search, "--out-dir", str(out / f"search-{device}")],
                                                                    args.data_dir)
        onnx = importlib.util.find_spec("onnxscript") is not None
        trained = only_run(out / f"train-{devices[0]}")
        steps["export wall s"] = {"cpu": recarch(["export", str(trained)] + (["--onnx"] if onnx else []), args.data_dir)}
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
        ddp = out / "ddp"
        steps["ddp wall s"] = {args.device: recarch([*recipe, *epochs, *_sets(f"train.device={args.device}"),
                                                     "--out-dir", str(ddp)], args.data_dir, torchrun)}
        assert "1 process(es)" in (only_run(ddp) / "log.txt").read_text()
    result = {"benchmark": "gpu-check", "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "quick": args.quick, "epochs": 1 if args.quick else args.epochs, "capped": True, "onnx": onnx,
              "steps": steps, "process_group": "nccl" if args.device.startswith("cuda") else "gloo",
              "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info()}
    path = Path(args.out or HERE / "results" / f"gpu-check-{args.device.split(':')[0]}{'-quick' if args.quick else ''}.json")
    write_json_atomic(path, result)
    print(json.dumps(steps, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
