"""The public pose-graph datasets (skipped when ../shared/data is absent): best known optima, mixed = fp64.

Best known chi2 in g2o's convention, measured with g2o (LM from the file, or polishing GTSAM's optimum;
the lower). fp64 + Cholesky must reach each at most 1e-6 relative above it (lower is better).
"""
import pytest

from mixslam.errors import InformationMatrixError
from mixslam.io import read_pose_graph
from mixslam.pgo import optimize_pose_graph

BEST_CHI2 = {
    "sphere2500.g2o": (727.149247, "file"),
    "parking-garage.g2o": (1.238683944, "file"),
    "smallGrid3D.g2o": (458.1537906, "file"),
    "intel.g2o": (45.00469581, "file"),
    "MIT.g2o": (526.3310383, "file"),
    "input_M3500_g2o.g2o": (137.9129509, "file"),
    "city10000.g2o": (511.9851636, "file"),
    "ais2klinik.g2o": (172.8155793, "file"),
    "CSAIL.g2o": (40.54730984, "file"),
    "kitti_00.g2o": (98.32166693, "file"),
    "torus3D.g2o": (14574.74617, "chordal"),
}
SMALL = ["smallGrid3D.g2o", "intel.g2o", "MIT.g2o", "CSAIL.g2o", "parking-garage.g2o"]


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(BEST_CHI2))
def test_fp64_cholesky_reaches_best_known_optimum(name, data_dir):
    best, init = BEST_CHI2[name]
    graph = read_pose_graph(data_dir / "pgo" / name)
    _, rep = optimize_pose_graph(graph, precision="fp64", solver="cholesky", init=init)
    assert rep.converged, rep.reason
    assert 2 * rep.final_cost <= best * (1 + 1e-6), (2 * rep.final_cost, best)


@pytest.mark.data
@pytest.mark.parametrize("name", SMALL)
def test_mixed_ic_matches_fp64(name, data_dir):
    best, init = BEST_CHI2[name]
    graph = read_pose_graph(data_dir / "pgo" / name)
    _, ref = optimize_pose_graph(graph, precision="fp64", solver="cholesky", init=init)
    _, rep = optimize_pose_graph(graph, precision="mixed", solver="ic", init=init)
    assert rep.fp16_overflows == 0
    assert rep.final_cost <= ref.final_cost * (1 + 1e-6), (rep.final_cost, ref.final_cost)


@pytest.mark.data
def test_cubicle_is_refused_then_repaired(data_dir):
    path = data_dir / "pgo" / "cubicle.g2o"
    with pytest.raises(InformationMatrixError, match="not positive definite"):
        read_pose_graph(path)
    graph = read_pose_graph(path, repair="nearest")
    assert graph.warnings["repaired_information"] == 5021
