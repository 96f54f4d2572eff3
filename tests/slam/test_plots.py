"""PNG plots of the SLAM pipeline (mixslam.slam.plots): files written, robust to empty / NaN / zero inputs."""
from __future__ import annotations

import csv
import threading

import numpy as np
import pytest

from mixslam.eval.metrics import stats
from mixslam.sim.world import WorldConfig, make_world
from mixslam.slam import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(p, path):
    assert p == path
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_SIGNATURE


@pytest.fixture(scope="module")
def world():
    return make_world(WorldConfig(), 0)


def circle(n, r=3.0, c=(6.0, 5.0)):
    a = np.linspace(0.0, 2.0 * np.pi, n)
    return np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a), np.full(n, 1.1)], axis=1)


def test_top_view_with_world_and_loops(tmp_path, world):
    assert world.walls.shape[0] > 0 and world.furniture.shape[0] > 0
    rng = np.random.default_rng(0)
    truth = circle(80)
    vo = truth + np.cumsum(rng.normal(0.0, 0.02, truth.shape), axis=0)
    lc = truth + rng.normal(0.0, 0.01, truth.shape)
    loops = np.array([[0, 79], [5, 75], [10, 70]])
    path = tmp_path / "sub" / "dir" / "top.png"          # parents are created
    assert_png(plots.plot_top_view(path, truth, {"VO": vo, "loop-closed": lc}, world=world,
                                   title="seed 0", loops=loops), path)


def test_top_view_many_names_nan_and_bad_loops(tmp_path):
    truth = circle(30)
    trajs = {f"policy {i}": truth + 0.05 * i for i in range(14)}
    nan = truth.copy()
    nan[3:7] = np.nan
    trajs["with NaN"] = nan
    trajs["all NaN"] = np.full_like(truth, np.nan)
    trajs["empty"] = np.zeros((0, 3))
    loops = np.array([[0, 29, 1], [-1, 3, 0], [2, 500, 1]])  # (q, 3) like loop_candidates; bad pairs skipped
    path = tmp_path / "top.png"
    assert_png(plots.plot_top_view(path, truth, trajs, loops=loops), path)


def test_top_view_empty(tmp_path):
    path = tmp_path / "empty.png"
    assert_png(plots.plot_top_view(path, np.zeros((0, 3)), None, loops=np.zeros((0, 2), int)), path)


def test_top_view_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError):
        plots.plot_top_view(tmp_path / "bad.png", np.zeros(5), {})


@pytest.mark.parametrize("log", [True, False])
def test_error_over_time(tmp_path, log):
    rng = np.random.default_rng(1)
    e_vo = np.abs(rng.normal(0.0, 0.1, 50)).cumsum()
    e_lc = np.abs(rng.normal(0.0, 0.02, 50))
    e_lc[0] = 0.0                                        # zero: clipped on the log axis
    e_lc[10:12] = np.nan
    path = tmp_path / f"err_{log}.png"
    assert_png(plots.plot_error_over_time(path, {"VO": e_vo, "loop-closed": e_lc}, title="t", log=log), path)


def test_error_over_time_degenerate(tmp_path):
    for i, errors in enumerate([{}, {"a": np.zeros(10), "b": np.full(5, np.nan), "c": np.zeros(0)},
                                {"a": np.array([0.0, -1.0, np.inf, 2.0])}]):
        path = tmp_path / f"deg{i}.png"
        assert_png(plots.plot_error_over_time(path, errors), path)


def test_cumulative_histograms(tmp_path):
    rng = np.random.default_rng(2)
    vals = {"fp64": rng.lognormal(-3.0, 0.5, 40), "fp32": rng.lognormal(-2.5, 0.7, 40),
            "mixed": np.concatenate([rng.lognormal(-2.0, 1.0, 30), [0.0, np.nan, np.inf]])}
    for log_x in (True, False):
        path = tmp_path / f"cdf_{log_x}.png"
        assert_png(plots.plot_cumulative_histograms(path, vals, title="cdf", log_x=log_x), path)


def test_cumulative_histograms_degenerate(tmp_path):
    for i, vals in enumerate([{}, {"a": np.zeros(0), "b": np.full(4, np.nan)}, {"a": np.zeros(3), "b": [1.0]}]):
        path = tmp_path / f"cdf_deg{i}.png"
        assert_png(plots.plot_cumulative_histograms(path, vals), path)


def test_cumulative_csv(tmp_path):
    vals = {"fp64": np.array([0.3, 0.1, 0.2]), "bf16": np.array([1.0, np.nan, 0.5, 0.5, 2.0]),
            "none": np.zeros(0)}
    path = tmp_path / "out" / "cdf.csv"
    assert plots.write_cumulative_csv(path, vals) == path
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["policy", "value", "cdf"]
    body = rows[1:]
    assert len(body) == 3 + 4                            # NaN left out, empty policy has no rows
    for name, n in (("fp64", 3), ("bf16", 4)):
        r = [row for row in body if row[0] == name]
        assert len(r) == n
        v = np.array([float(x[1]) for x in r])
        c = np.array([float(x[2]) for x in r])
        assert (np.diff(v) >= 0).all()
        assert (np.diff(c) > 0).all() and c[-1] == 1.0
        np.testing.assert_allclose(c, np.arange(1, n + 1) / n)
    np.testing.assert_array_equal([float(x[1]) for x in body[:3]], [0.1, 0.2, 0.3])


def test_cumulative_csv_empty(tmp_path):
    path = tmp_path / "empty.csv"
    plots.write_cumulative_csv(path, {})
    assert path.read_text().splitlines() == ["policy,value,cdf"]


def test_ate_table(tmp_path):
    rng = np.random.default_rng(3)
    table = {}
    for pol, s in (("fp64", 0.05), ("fp32", 0.06), ("bf16", 0.2)):
        table[f"{pol} VO"] = stats(np.abs(rng.normal(0.0, s, 100)))
        table[f"{pol} LC"] = stats(np.abs(rng.normal(0.0, s / 5, 100)))
    table["bf16 LC"]["max"] = float("nan")
    table["fp32 LC"]["p99"] = 0.0
    table["odd key"] = {"mean": 0.1}
    path = tmp_path / "table.png"
    assert_png(plots.plot_ate_table(path, table, title="ATE"), path)
    path2 = tmp_path / "table_empty.png"
    assert_png(plots.plot_ate_table(path2, {}), path2)


def test_threads(tmp_path):
    """No pyplot / global state: concurrent plots from threads all succeed."""
    errs = []

    def work(i):
        try:
            plots.plot_error_over_time(tmp_path / f"t{i}.png", {"VO": np.linspace(0.01, 1.0, 20)})
        except Exception as exc:  # pragma: no cover
            errs.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs
    for i in range(2):
        assert (tmp_path / f"t{i}.png").read_bytes()[:8] == PNG_SIGNATURE


def test_no_pyplot(tmp_path):
    """The plots never import pyplot (no global figure manager, no backend switch)."""
    import sys
    if "matplotlib.pyplot" in sys.modules:
        pytest.skip("pyplot already imported by another test")
    plots.plot_error_over_time(tmp_path / "a.png", {"x": np.ones(3)})
    assert "matplotlib.pyplot" not in sys.modules
