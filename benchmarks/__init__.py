"""Benchmark scripts, run as files (``python benchmarks/<name>.py``), and the code they share.

A regular package so that ``benchmarks.gpu_vram`` and ``benchmarks.fake_optimizer`` are this folder's
whatever else the environment has installed under that name: the scripts put the repository root first
on ``sys.path`` and import them from there. Benchmarks never import from ``tests/``; tests may import
from here.
"""
