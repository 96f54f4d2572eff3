"""``mixslam bench``: every figure of the mixed-precision claim, regenerated in one command.

See :func:`mixslam.bench.run.run_bench` and ``docs/bench.md``.
"""

from ..runner import TaskRunner
from .config import BenchConfig, BenchSizes, bench_config, with_sizes
from .context import BenchContext, FigureResult

__all__ = ["BenchConfig", "BenchSizes", "bench_config", "with_sizes", "BenchContext", "FigureResult", "TaskRunner"]
