"""Cost measurement shared by every model and search: counted FLOPs, measured time and memory.

Each backend is a small module; cost_report assembles the JSON object every result carries.
"""
from recarch.cost.flops import (UNIT, analytic_layer_flops, analytic_transformer_flops,
                                attention_flop_mapping, count_flops, flops_per_sequence)
from recarch.cost.memory import baseline_rss_mb, cuda_peak_memory, peak_memory_subprocess
from recarch.cost.report import (cost_report, count_parameters, machine_info,
                                 matmul_peak_gflops)
from recarch.cost.timing import inference_time

__all__ = [
    "UNIT", "analytic_layer_flops", "analytic_transformer_flops", "attention_flop_mapping",
    "baseline_rss_mb", "cost_report", "count_flops", "count_parameters", "cuda_peak_memory",
    "flops_per_sequence", "inference_time", "machine_info", "matmul_peak_gflops",
    "peak_memory_subprocess",
]
