"""Benchmarks: the registry (``experiments/benchmarks.yaml``), one runner, one report writer, and the commands
``python -m umadapt.bench run|pairs|mtl|speed`` behind the ``make bench-*`` targets.

* :mod:`.registry`: the benchmarks as data: base config, methods as YAML stacks, headline metrics, published numbers.
* :mod:`.runner`: fit + test of each (method, seed) as ``python -m umadapt`` subprocesses; one resume rule.
* :mod:`.report`: mean ± std, Δ_MTL, gap closed; Markdown, JSON and a bar-chart PNG.
* :mod:`.pairs`, :mod:`.mtl`, :mod:`.speed`: all domain pairs of a class-folder benchmark, the multi-task
  benchmark, the framework-overhead / data-pipeline / memory benchmark.
"""
