"""SolveReport: typed fields, and a JSON form (as_dict) that json.dumps takes without NaN; to_jsonable itself."""
import dataclasses
import enum
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixslam.ba import optimize_bundle
from mixslam.jsonable import to_jsonable
from mixslam.linear import LinearStatus, MemoryUse, PreconditionerStats
from mixslam.pgo import optimize_pose_graph
from mixslam.precision import Precision, PrecisionPolicy, QuantizationStats
from mixslam.sim import simulate_pose_graph
from mixslam.sim.bundle import WindowConfig, simulate_window
from mixslam.solve import IterationRecord, LMConfig, SolveReport, Status
from mixslam.solve.report import DepthCounts, DepthStats, ProblemInfo

SHORT = LMConfig(max_iterations=4)


def _dumps(d: dict) -> dict:
    """JSON text without NaN/inf, read back."""
    return json.loads(json.dumps(d, allow_nan=False))


@pytest.fixture(scope="module")
def pgo_report():
    graph = simulate_pose_graph("manhattan", 60, seed=1).graph
    return optimize_pose_graph(graph, precision="mixed", solver="cg", init="odometry", lm=SHORT)[1]


@pytest.fixture(scope="module")
def ba_report():
    data, _, _ = simulate_window(WindowConfig(keyframes=8, landmarks_per_frame=30, fixed_frames=2), seed=0)
    return optimize_bundle(data, precision="fp64", lm=SHORT)[1]


def test_pgo_report_fields_are_typed(pgo_report):
    rep = pgo_report
    assert isinstance(rep.status, Status)
    assert rep.solver == "cg" and rep.preconditioner == "ic" and rep.solver_label == "cg+ic"
    assert rep.precision == "mixed" and rep.init == "odometry"
    assert isinstance(rep.policy, PrecisionPolicy) and rep.policy.preconditioner_storage is Precision.FP16
    assert isinstance(rep.quantization, QuantizationStats) and rep.quantization.count > 0
    assert isinstance(rep.memory, MemoryUse) and rep.memory.jacobian_bytes > 0
    assert isinstance(rep.preconditioner_stats, PreconditionerStats)
    assert rep.preconditioner_stats.factorizations >= 1
    assert isinstance(rep.file_cost, float) and rep.file_cost != rep.initial_cost  # odometry init
    assert rep.depth is None and rep.problem is None
    assert all(isinstance(h, IterationRecord) and isinstance(h.linear_status, LinearStatus) for h in rep.history)
    for key in ("init", "setup", "compile", "total", "products_s", "cg_s", "ic_factor"):
        assert key in rep.timing, key


def test_ba_report_fields_are_typed(ba_report):
    rep = ba_report
    assert rep.solver == "schur" and rep.preconditioner is None and rep.solver_label == "schur"
    assert isinstance(rep.depth, DepthStats) and isinstance(rep.depth.initial, DepthCounts)
    assert rep.depth.final.behind == 0
    assert isinstance(rep.problem, ProblemInfo) and rep.problem.model == "pinhole"
    assert rep.problem.free_cameras == rep.problem.cameras - 2
    assert rep.memory.reduced_system_bytes > 0 and rep.memory.jacobian_bytes is None
    assert rep.preconditioner_stats is None and rep.file_cost is None


def test_pgo_as_dict_is_json(pgo_report):
    d = _dumps(pgo_report.as_dict())
    assert d["solver"] == "cg" and d["preconditioner"] == "ic" and d["status"] == pgo_report.status.value
    assert d["policy"] == pgo_report.policy.as_dict() and d["policy"]["preconditioner_storage"] == "fp16"
    assert d["ic"] == dataclasses.asdict(pgo_report.preconditioner_stats)
    assert d["memory"] == pgo_report.memory.as_dict() and "factor_bytes" not in d["memory"]
    assert d["file_cost"] == pgo_report.file_cost
    assert d["quantization"] == {k: getattr(pgo_report.quantization, k)
                                 for k in ("overflows", "underflows", "subnormals", "fallbacks")}
    assert "depth" not in d and "problem" not in d
    assert len(d["history"]) == len(pgo_report.history)
    assert d["history"][0]["linear_status"] in [s.value for s in LinearStatus]
    assert d["time_s"] == pgo_report.timing["total"]


def test_ba_as_dict_is_json(ba_report):
    d = _dumps(ba_report.as_dict())
    assert d["solver"] == "schur" and d["preconditioner"] is None
    assert d["depth"] == {"initial": dataclasses.asdict(ba_report.depth.initial),
                          "final": dataclasses.asdict(ba_report.depth.final)}
    assert d["problem"]["model"] == "pinhole" and d["problem"]["warnings"] == []
    assert "ic" not in d and "file_cost" not in d
    assert set(d["memory"]) == {"reduced_system_bytes", "point_blocks_bytes"}


def test_a_failed_report_with_nan_is_json():
    rec = IterationRecord(1, 1.0, float("nan"), 0.5, float("inf"), float("nan"), 1e-5, False, 3, float("nan"),
                          LinearStatus.NONFINITE, 0.01)
    rep = SolveReport(Status.FAILED, "the gradient is not finite", float("nan"), float("nan"), 1, 0, history=[rec],
                      timing={"total": float("nan")}, memory=MemoryUse(factor_bytes=float("nan")))
    assert rep.failed and not rep.converged
    d = _dumps(rep.as_dict())
    assert d["status"] == "failed" and d["initial_cost"] is None and d["time_s"] is None
    assert d["memory"] == {"factor_bytes": None}
    assert d["history"][0]["new_cost"] is None and d["history"][0]["step_norm"] == 1e308
    assert d["history"][0]["linear_status"] == "nonfinite"
    assert "nan" in rep.summary() and rep.summary().startswith("failed:")


def test_summary(pgo_report):
    s = pgo_report.summary()
    assert s.startswith(pgo_report.status.value) and f"{pgo_report.iterations} iterations" in s


# ---- to_jsonable -----------------------------------------------------------------------------------------------

class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Plain:
    a: int
    b: object


@dataclasses.dataclass
class WithAsDict:
    a: int

    def as_dict(self):
        return {"doubled": 2 * self.a}


def test_to_jsonable_enums_and_numpy():
    assert to_jsonable(Status.CONVERGED) == "converged"
    assert to_jsonable(Precision.FP16) == "fp16"
    assert to_jsonable(Colour.RED) == "red"
    assert to_jsonable({Colour.RED: 1, Precision.FP32: 2}) == {"red": 1, "fp32": 2}
    assert to_jsonable(np.int64(3)) == 3 and type(to_jsonable(np.int64(3))) is int
    assert to_jsonable(np.float32(0.5)) == 0.5 and type(to_jsonable(np.float32(0.5))) is float
    assert to_jsonable(np.bool_(True)) is True
    assert to_jsonable(np.arange(3)) == [0, 1, 2]
    assert to_jsonable(np.array([[1.5, np.nan]])) == [[1.5, None]]
    assert to_jsonable(np.dtype(np.float64)) == np.dtype(np.float64)  # unknown types pass through


def test_to_jsonable_non_finite():
    assert to_jsonable(float("nan")) is None and to_jsonable(np.float64("nan")) is None
    assert to_jsonable(float("inf")) == 1e308 and to_jsonable(-np.inf) == -1e308
    assert to_jsonable([1.0, math.inf, {"x": math.nan}]) == [1.0, 1e308, {"x": None}]
    json.dumps(to_jsonable({"a": [math.nan, -math.inf]}), allow_nan=False)


def test_to_jsonable_containers_and_dataclasses():
    assert to_jsonable((1, 2)) == [1, 2]
    assert sorted(to_jsonable({3, 1})) == [1, 3] and to_jsonable(frozenset()) == []
    assert to_jsonable(Path("/tmp/x.json")) == "/tmp/x.json"
    assert to_jsonable(Plain(1, Plain(2, np.float32(0.25)))) == {"a": 1, "b": {"a": 2, "b": 0.25}}
    assert to_jsonable(WithAsDict(4)) == {"doubled": 8}  # as_dict wins
    assert to_jsonable(Plain) is Plain  # a class is not an instance
    assert to_jsonable(QuantizationStats(count=2, max_abs=np.float64(3.0))) == dataclasses.asdict(
        QuantizationStats(count=2, max_abs=3.0))
    assert to_jsonable(DepthStats(DepthCounts(1, 2), DepthCounts())) == {"initial": {"behind": 1, "clamped": 2},
                                                                       "final": {"behind": 0, "clamped": 0}}
    assert to_jsonable({"ok": True, "none": None, "s": "x"}) == {"ok": True, "none": None, "s": "x"}


def test_solve_counters_keep_each_solve_time_and_time_stats_count_the_budget():
    from mixslam.solve.report import SolveCounters, time_stats

    assert time_stats([], 0.1) is None
    st = time_stats([0.01, 0.02, 0.5, 0.03], 0.1)
    assert st["median"] == pytest.approx(0.025) and st["max"] == 0.5 and st["over_budget"] == 1
    assert st["count"] == 4 and st["p99"] <= 0.5 and st["budget"] == 0.1
    c = SolveCounters()
    assert c.solve_seconds == []


def test_reports_carry_the_measured_peak_resident_memory():
    import sys

    from mixslam.pgo import optimize_pose_graph
    from mixslam.sim.pose_graph import simulate_pose_graph
    from mixslam.solve.report import peak_rss_bytes

    _, rep = optimize_pose_graph(simulate_pose_graph("manhattan", 50, seed=0).graph)
    if sys.platform.startswith("linux"):
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
        assert 0 < rep.peak_rss_bytes <= peak_rss_bytes() and abs(peak_rss_bytes() - hwm) <= 0.05 * hwm
    assert rep.as_dict()["peak_rss_bytes"] == rep.peak_rss_bytes
