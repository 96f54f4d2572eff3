"""``mixslam bench``: every figure of the mixed-precision claim, regenerated in one command.

See :func:`mixslam.bench.run.run_bench` and ``docs/bench.md``.
"""
from .config import BenchConfig, BenchSizes, bench_config, with_sizes
from .context import BenchContext, FigureResult
from .runner import TaskRunner

__all__ = ["BenchConfig", "BenchSizes", "bench_config", "with_sizes", "BenchContext", "FigureResult",
           "TaskRunner"]
