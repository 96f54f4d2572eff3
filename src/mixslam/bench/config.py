"""What ``mixslam bench`` runs: the scale of each figure and how batch work is executed.

Three presets (:func:`bench_config`):

``quick``
    test-sized: every figure is produced, on problems small enough that the whole run takes about a minute
    (this is what the test suite runs, to check the plumbing). Its numbers are not evidence.
``default``
    the reduced evidence run, minutes on a 2-core machine: tens of trajectories, PGO graphs up to thousands
    of keyframes, the benchmark data files where present.
``full``
    the sizes of the original claim (1,703 VO trajectory estimations, 800 PGO problems): hours on 2 cores,
    meant for a bigger machine or a Dask cluster (``--executor dask``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from numbers import Integral

from ..errors import ConfigError, check_config_fields
from ..slam.study import MIN_KEYFRAMES

FIGURES = (1, 2, 3, 4, 5, 6, 7, 8)
SCALES = ("quick", "default", "full")
EXECUTORS = ("process", "dask")


@dataclass(frozen=True)
class BenchSizes:
    """How big each figure's experiment is."""

    vo_trajectories: int = 40
    """Figures 2-3: simulated SLAM runs, each solved in every policy (the claim used 1,703 estimations)."""
    vo_keyframes: int = 150
    """Figures 1-3: keyframes per simulated run."""
    vo_window: int = 30
    """Figures 1-3: VO sliding-window length in keyframes."""
    vo_rooms: tuple = (2, 2)
    """Figures 1-3: rooms of the simulated flat (x, y)."""
    pgo_keyframes: tuple = (250, 500, 1000, 2000, 4000)
    """Figure 4: sizes of the growing pose graph at which the solve is timed."""
    pgo_problems: int = 100
    """Figure 5: PGO problems drawn from one long trajectory (the claim used 800)."""
    pgo_trajectory_keyframes: int = 2000
    """Figure 5: length of that long trajectory."""
    repeats: int = 3
    """Timing repeats (the minimum is kept: these machines are noisy)."""
    kernel_repeats: int = 20
    """Figure 7: repeats per kernel timing."""
    ba_window_seeds: int = 3
    """Figures 6-7: simulated 50-keyframe BA windows."""
    use_data: bool = True
    """Figures 6-8: also run on the benchmark data files (``$MIXSLAM_DATA`` or ``../shared/data``) when present."""
    pgo_files: tuple = ("intel.g2o", "input_M3500_g2o.g2o", "city10000.g2o", "sphere2500.g2o", "torus3D.g2o")
    """Figures 7-8: pose-graph data files (names in the data folder's ``pgo/``)."""
    ba_files: tuple = ("problem-16-22106-pre.txt",)
    """Figures 7-8: BAL data files (names in the data folder's ``ba/``)."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={
                "vo_trajectories": 1,
                "vo_keyframes": MIN_KEYFRAMES,
                "vo_window": 2,
                "pgo_problems": 1,
                "pgo_trajectory_keyframes": 2,
                "repeats": 1,
                "kernel_repeats": 1,
                "ba_window_seeds": 0,
            },
            choices={"use_data": (True, False)},
        )
        r = self.vo_rooms
        if (
            not isinstance(r, (tuple, list))
            or len(r) != 2
            or any(isinstance(v, bool) or not isinstance(v, Integral) for v in r)
            or not (tuple(r) == (1, 1) or min(r) >= 2)
        ):
            raise ConfigError(f"BenchSizes.vo_rooms must be (nx, ny) integers, both >= 2, or (1, 1), got {r!r}")
        k = self.pgo_keyframes
        if not isinstance(k, (tuple, list)) or any(
            isinstance(v, bool) or not isinstance(v, Integral) or v < 2 for v in k
        ):
            raise ConfigError(f"BenchSizes.pgo_keyframes must be a tuple of integers >= 2, got {k!r}")
        for name in ("pgo_files", "ba_files"):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or not all(isinstance(f, str) and f for f in v):
                raise ConfigError(f"BenchSizes.{name} must be a tuple of file names, got {v!r}")


_PRESETS = {
    "quick": BenchSizes(
        vo_trajectories=2,
        vo_keyframes=100,
        vo_window=15,
        vo_rooms=(1, 1),
        pgo_keyframes=(100, 150),
        pgo_problems=4,
        pgo_trajectory_keyframes=150,
        repeats=1,
        kernel_repeats=2,
        ba_window_seeds=1,
        use_data=False,
    ),
    "default": BenchSizes(),
    "full": BenchSizes(
        vo_trajectories=1703,
        pgo_keyframes=(250, 500, 1000, 2000, 4000, 8000),
        pgo_problems=800,
        pgo_trajectory_keyframes=10000,
        repeats=5,
        ba_window_seeds=10,
        pgo_files=(
            "intel.g2o",
            "MIT.g2o",
            "CSAIL.g2o",
            "input_M3500_g2o.g2o",
            "kitti_00.g2o",
            "city10000.g2o",
            "ais2klinik.g2o",
            "smallGrid3D.g2o",
            "parking-garage.g2o",
            "sphere2500.g2o",
            "torus3D.g2o",
        ),
        ba_files=("problem-16-22106-pre.txt", "problem-49-7776-pre.txt"),
    ),
}


@dataclass(frozen=True)
class BenchConfig:
    """One ``mixslam bench`` run."""

    scale: str = "default"
    """``quick`` | ``default`` | ``full`` (see the module docstring)."""
    sizes: BenchSizes = field(default_factory=BenchSizes)
    """The experiment sizes (set from ``scale`` by :func:`bench_config`)."""
    seed: int = 0
    """Master seed: every task derives its own seed from this and its index, so results do not depend on the
    executor or the worker count."""
    workers: int = 1
    """Parallel worker processes for batch work (figures 2-3 and 5)."""
    executor: str = "process"
    """``process`` (a local process pool; serial when ``workers`` is 1) or ``dask`` (Dask distributed)."""
    scheduler: str | None = None
    """Dask scheduler address (``tcp://HOST:PORT``); None starts a local Dask cluster with ``workers`` workers."""
    figures: tuple = FIGURES
    """Which figures to produce (1-8)."""
    progress: bool = True
    """Print a progress bar for batch work and a line per figure (stderr)."""

    def __post_init__(self):
        if not isinstance(self.sizes, BenchSizes):
            raise ConfigError(f"BenchConfig.sizes must be a BenchSizes, got {self.sizes!r}")
        check_config_fields(
            self,
            ints={"seed": 0, "workers": 1},
            choices={"scale": SCALES, "executor": EXECUTORS, "progress": (True, False)},
        )
        f = self.figures
        if (
            not isinstance(f, (tuple, list))
            or not f
            or any(isinstance(v, bool) or not isinstance(v, Integral) or v not in FIGURES for v in f)
        ):
            raise ConfigError(
                f"BenchConfig.figures must be a non-empty tuple of figure numbers from {FIGURES}, got {f!r}"
            )
        if self.scheduler is not None and (self.executor != "dask" or not isinstance(self.scheduler, str)):
            raise ConfigError(
                f"BenchConfig.scheduler (a Dask address) needs executor 'dask' (--executor dask), got "
                f"scheduler {self.scheduler!r} with executor {self.executor!r}"
            )


def bench_config(scale: str = "default", **overrides) -> BenchConfig:
    """The preset ``scale`` with its sizes, and any :class:`BenchConfig` field overridden."""
    if scale not in _PRESETS:
        raise ConfigError(f"bench scale must be one of {list(SCALES)}, got {scale!r}")
    sizes = overrides.pop("sizes", None) or _PRESETS[scale]
    return BenchConfig(scale=scale, sizes=sizes, **overrides)


def with_sizes(config: BenchConfig, **sizes) -> BenchConfig:
    """``config`` with some :class:`BenchSizes` fields replaced."""
    return replace(config, sizes=replace(config.sizes, **sizes))
