"""Benchmarks: ``make bench`` (``python -m benchmarks [NAME ...]``). Each prints what it measured."""
