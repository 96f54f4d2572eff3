"""The public BAL problems (skipped when ../shared/data is absent): Ceres' documented result, mixed = fp64.

Ceres documents problem-16-22106: 4.185660e+06 -> 1.803390e+04 in 7 iterations (LM, Schur). Our fp64 Schur
must reproduce it; `mixed` CGNR (fp16 Jacobian storage) must end within 1e-4 relative of the fp64 cost
(lower is better), with no fp16 overflow.
"""
import pytest

from mixslam.ba import optimize_bundle
from mixslam.io.bal import read_bal

SHRINK = "bal-ladybug-problem-49-7776-pre-shrink-1800.txt"


@pytest.fixture(scope="module")
def dubrovnik16(data_dir):
    path = data_dir / "ba" / "problem-16-22106-pre.txt"
    if not path.exists():
        pytest.skip("problem-16-22106 not present")
    return read_bal(path)


@pytest.fixture(scope="module")
def dubrovnik16_fp64(dubrovnik16):
    return optimize_bundle(dubrovnik16, precision="fp64", solver="schur")


def test_schur_reproduces_ceres_on_16_22106(dubrovnik16, dubrovnik16_fp64):
    _, report = dubrovnik16_fp64
    assert f"{report.initial_cost:.6e}" == "4.185660e+06"
    assert f"{report.final_cost:.6e}" == "1.803390e+04"
    assert report.iterations == 7
    assert report.converged


def test_mixed_cgnr_matches_fp64_on_16_22106(dubrovnik16, dubrovnik16_fp64):
    _, ref = dubrovnik16_fp64
    _, report = optimize_bundle(dubrovnik16, precision="mixed", solver="cgnr")
    assert report.final_cost <= ref.final_cost * (1 + 1e-4), (report.final_cost, ref.final_cost)
    assert report.fp16_overflows == 0
    assert report.quantization.fallbacks == 0


@pytest.mark.parametrize("precision,solver", [("fp64", "schur"), ("mixed", "cgnr")])
def test_shrink_1800(data_dir, precision, solver):
    """Ladybug subset with 31 observations behind their camera: finite, counted, and the known optimum."""
    path = data_dir / "ba" / SHRINK
    if not path.exists():
        pytest.skip(f"{SHRINK} not present")
    data = read_bal(path)
    _, report = optimize_bundle(data, precision=precision, solver=solver)
    assert report.depth.initial.behind == 31
    # SOURCES.md: fp64 LM reaches 3001.359367 when the relative decrease first falls below 1e-6.
    assert report.final_cost <= 3001.359367 * (1 + 1e-4)
    assert report.fp16_overflows == 0
