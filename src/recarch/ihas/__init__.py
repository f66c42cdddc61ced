"""Embedding track: iHAS (instance-wise hierarchical architecture search, CIKM'23; DESIGN.md §5).

Per-instance, per-field embedding dimensions from Bernoulli gates (``gates``, ``embedding``,
``search``), instances grouped by their deterministic gate patterns (``cluster``), one backbone
retrained per group and served behind the gate network (``ensemble``); ``job.run_ihas`` runs the
three stages beside the full-dimension and AutoDim-like baselines (``recarch ihas``).
"""
