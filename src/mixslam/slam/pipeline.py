"""The SLAM pipeline: sliding-window VO, loop-closure verification, and a growing pose graph re-optimized
each time loops are added, all in one precision policy.

Data flow (one simulated run, one policy)::

    Run (sim/world.py) --> run_vo (slam/vo.py: window BA in the policy) --> VO keyframe poses + snapshots
        loop candidates (sim/world.loop_candidates) --> verify (slam/loop_closure.py) --> loop edges
        odometry edges (consecutive VO poses) + loop edges --> PoseGraph of keyframes 0..j
        --> optimize_pose_graph (pgo.py: cholesky for fp64, CGNR + static IC(k) for the others)
        --> global_bundle_adjustment (slam/global_ba.py: every keyframe and track, tracks fused through the
            loops' inliers, started from the pose graph; schur for fp64, CGNR for the others)

Decisions (see docs/ARCHITECTURE.md):

* The VO does not receive the loop-closed poses back (no feedback): the VO-only trajectory and the
  loop-closed one are then two estimates of the same run, compared by ATE.
* The pose graph is re-optimized at every keyframe that brings accepted loops, over the keyframes seen so
  far, warm-started from the previous solution (newer keyframes composed from it with the VO odometry),
  then once more over the whole run at the end. Its structure changes at each such solve (new keyframes
  and edges), so each solve factors its own static IC preconditioner once and reuses it over its LM
  iterations.
* Odometry edges get a fixed isotropic information (``odometry_sigma``), loop edges the PnP information
  divided by an inflation factor (slam/loop_closure.py); the wheel odometry adds a second chain of edges
  with the information of its noise model (``wheel_odometry``, on by default: it carries the scale).
* Loop policy (``loop_policy``, default ``loose+gnc``): candidates pass a loose verification and the
  pose-graph solves are robust (TLS + GNC, the consecutive-keyframe edges known inliers), so the false loops
  a verification lets through are rejected by GNC and kept out of the global BA; ``strict`` verifies with
  the stricter thresholds and trusts what passes (measured in ``benchmarks/loop_policy.py``).
* After the final pose-graph solve, one global bundle adjustment (``global_ba``, on by default) refines the
  loop-closed trajectory from the pixels; the pose graph's trajectory stays in the result (``pgo_R``,
  ``pgo_t``) so each stage can be scored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from ..errors import ConfigError, check_config_fields
from ..lie import so3
from ..pgo import PGOConfig, optimize_pose_graph
from ..problem.pose_graph import PoseGraph
from ..sim.world import AliasedCandidate, LoopConfig, aliased_candidates, loop_candidates
from ..solve.config import LMConfig, RobustConfig
from ..solve.report import SolveCounters
from .global_ba import GlobalBAConfig, GlobalBAResult, global_bundle_adjustment
from .loop_closure import LoopVerifyConfig, verify
from .vo import VOConfig, VOResult, run_vo

LOOP_POLICIES = ("strict", "loose+gnc")
"""The values of :attr:`PipelineConfig.loop_policy`."""
WRONG_LOOP_M = 0.25
"""A loop edge is *wrong* (a false loop) when its measured relative pose is off the truth's by more than this
(m) ..."""
WRONG_LOOP_DEG = 5.0
"""... or by more than this rotation (deg). Verified true revisits of the default world measure at most
0.08 m / 0.9 deg; aliased loops are off by metres."""
LOOP_ROBUST = RobustConfig(loss="tls", gnc=True, known_inliers="odometry")
"""The pose-graph solves of ``loop_policy="loose+gnc"``: truncated least squares with graduated
non-convexity; the known inliers are the edges between consecutive keyframes (the VO odometry and the wheel
odometry chain), every loop edge can be rejected."""


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the whole pipeline (the precision policy is passed apart, to run several on one config)."""

    vo: VOConfig = field(default_factory=VOConfig)
    """Sliding-window VO."""
    loops: LoopConfig = field(default_factory=LoopConfig)
    """Loop-closure candidate proposals (simulated place recognition: recall, false positives)."""
    verify: LoopVerifyConfig = field(default_factory=LoopVerifyConfig)
    """Geometric verification of the candidates."""
    odometry_sigma: tuple = (0.01, 0.005)
    """Standard deviation of a VO odometry edge: translation (m) and rotation (rad)."""
    wheel_odometry: bool = True
    """Also add the wheel odometry between consecutive keyframes as pose-graph edges (information from its
    noise model). The wheel odometry is unbiased in scale, which the monocular VO is not (1-4% off), and
    SE(3) loop edges cannot correct scale. Measured on 20 seeds of each world with the session-5 VO (fp64):
    loop-closed RMSE 0.053 -> 0.034 m on the default world, 0.039 -> 0.025 m on the demo world. Session 4's
    VO, whose windows were less accurate, gained less and on some seeds lost, so it was off then."""
    pgo_max_iterations: int = 50
    """LM iterations per pose-graph solve at most."""
    pgo_min_gap: int = 10
    """Re-optimize the growing graph at most once per this many keyframes (loops accepted in between wait for
    the next solve; the final solve over the whole run always happens)."""
    global_ba: GlobalBAConfig = field(default_factory=GlobalBAConfig)
    """Global bundle adjustment after the final pose-graph solve (runs only when loops were accepted and,
    with ``loop_policy="loose+gnc"``, some survived GNC; the loops GNC rejected are not fused)."""
    loop_policy: str = "loose+gnc"
    """How false loops are kept out. ``strict``: the candidates pass ``verify`` (20 inliers, half of the
    matches) and the pose graph is plain least squares: a false loop that passes is fused. ``loose+gnc``:
    the candidates pass ``loose_verify`` and every pose-graph solve is robust (:data:`LOOP_ROBUST`: TLS with
    GNC, odometry edges known inliers), so GNC rejects the false loops, which the global BA then does not
    fuse; a loop GNC rejected sits out the later solves until the final one, which decides over all loops.

    Default ``loose+gnc``, measured by ``benchmarks/loop_policy.py`` (docs/results/loop_policy.txt: 8
    default-world trajectories, fp64). With the simulator's own candidates both admit the same 286 loops and
    give the same ATE (ratio 1.0000 on every trajectory). With perceptual aliasing (``LoopConfig.
    aliasing_rate`` 0.02) loose+gnc admits 19 (weak aliasing) / 32 (strong) false loops and GNC rejects all
    of them and no correct loop; strict rejects the weak ones but keeps 22 strong ones, loop-closed RMSE
    median 1.84 m against 0.015 m (0.008x). The price: the pose-graph solves take 2.1x as long without false
    loops (about 0.1 s more per 300-keyframe run, a few % of the run), 4.5x with weak aliasing."""
    loose_verify: LoopVerifyConfig = field(
        default_factory=lambda: LoopVerifyConfig(min_inliers=10, min_inlier_ratio=0.3)
    )
    """The verification of ``loop_policy="loose+gnc"``: 10 inliers (20 equations for the 6 pose unknowns, 3x
    over-determined: the PnP's Hessian and information stay well conditioned) and 30% of the matches (a
    descriptor matcher in a repetitive scene returns well over half wrong matches); the rest is left to GNC."""

    def __post_init__(self):
        for name, cls in (
            ("vo", VOConfig),
            ("loops", LoopConfig),
            ("verify", LoopVerifyConfig),
            ("loose_verify", LoopVerifyConfig),
            ("global_ba", GlobalBAConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"PipelineConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        check_config_fields(
            self,
            ints={"pgo_max_iterations": 1, "pgo_min_gap": 0},
            choices={"wheel_odometry": (True, False), "loop_policy": LOOP_POLICIES},
        )
        v = self.odometry_sigma
        if (
            not isinstance(v, (tuple, list))
            or len(v) != 2
            or any(isinstance(x, bool) or not isinstance(x, Real) or not math.isfinite(x) or x <= 0 for x in v)
        ):
            raise ConfigError(
                "PipelineConfig.odometry_sigma must be a pair (translation m, rotation rad) of finite "
                f"numbers > 0, got {v!r}"
            )


@dataclass
class PipelineResult:
    """Trajectories (T_wc, keyframe order) and what each stage did."""

    truth_R: np.ndarray
    truth_t: np.ndarray
    vo_R: np.ndarray
    vo_t: np.ndarray
    lc_R: np.ndarray
    lc_t: np.ndarray
    """The loop-closed trajectory: the global BA's when it ran and succeeded, else the pose graph's."""
    vo: VOResult
    graph: PoseGraph
    """The final pose graph (VO odometry + accepted loops), with the loop-closed poses."""
    candidates: int = 0
    true_candidates: int = 0
    accepted: int = 0
    accepted_false: int = 0
    """Accepted candidates that were not true revisits (aliased ones included). Not all are wrong: a
    candidate from a place near (but not within ``LoopConfig.max_distance`` of) an earlier one can share
    landmarks with it and measure a correct relative pose; ``wrong`` counts the wrong ones."""
    aliased_candidates: int = 0
    """Perceptually aliased candidates among ``candidates`` (``LoopConfig.aliasing_rate``)."""
    wrong: int = 0
    """Accepted loops whose measurement is off the truth by more than :data:`WRONG_LOOP_M` or
    :data:`WRONG_LOOP_DEG`: the false loops admitted."""
    rejected: int = 0
    """Accepted loops the final robust pose-graph solve rejected (GNC weight < 0.5; ``loose+gnc`` only)."""
    rejected_wrong: int = 0
    """... of which wrong (the rest were correct loops GNC lost)."""
    wrong_kept: int = 0
    """Wrong loops in the final trajectory: ``wrong - rejected_wrong`` (should be 0)."""
    loop_policy: str = "loose+gnc"
    """The ``PipelineConfig.loop_policy`` that produced the result."""
    loops: list = field(default_factory=list)
    """The accepted :class:`~mixslam.slam.loop_closure.LoopEdge` s, in the order they were added."""
    loop_wrong: np.ndarray | None = None
    """(len(loops),) bool: the loop is wrong (see ``wrong``)."""
    loop_rejected: np.ndarray | None = None
    """(len(loops),) bool: the final solve rejected the loop."""
    pgo: SolveCounters = field(default_factory=SolveCounters)
    """The pose-graph re-solves (one per accepted loop batch): iterations, overflows, statuses, seconds."""
    seconds: float = 0.0
    precision: str = "fp64"
    pgo_R: np.ndarray | None = None
    """The pose graph's trajectory (before the global BA)."""
    pgo_t: np.ndarray | None = None
    gba: GlobalBAResult | None = None
    """What the global BA did (None: it did not run)."""


def _graph(R_wc, t_wc, edges_i, edges_j, meas_R, meas_t, info, n):
    fixed = np.zeros(n, bool)
    fixed[0] = True
    return PoseGraph(
        3,
        np.arange(n),
        R_wc[:n].copy(),
        t_wc[:n].copy(),
        np.asarray(edges_i, np.int64),
        np.asarray(edges_j, np.int64),
        np.asarray(meas_R),
        np.asarray(meas_t),
        np.asarray(info),
        fixed,
    )


def run_pipeline(
    run, precision: str = "fp64", config: PipelineConfig | None = None, seed: int = 0, vo: VOResult | None = None
) -> PipelineResult:
    """VO + loop closure + pose-graph optimization over one simulated run, in one precision policy."""
    cfg = config or PipelineConfig()
    t_start = time.perf_counter()
    if vo is None:
        vo = run_vo(run, precision, config=cfg.vo)
    n = len(vo.R_cw)
    vo_R, vo_t = vo.R_wc, vo.t_wc
    # Odometry edges between consecutive VO keyframes.
    odo_R = np.swapaxes(vo_R[:-1], 1, 2) @ vo_R[1:]
    odo_t = np.einsum("nji,nj->ni", vo_R[:-1], vo_t[1:] - vo_t[:-1])
    st, sr = cfg.odometry_sigma
    odo_info = np.diag([1 / st**2] * 3 + [4 / sr**2] * 3)
    E_i, E_j = list(range(n - 1)), list(range(1, n))
    M_R, M_t = list(odo_R), list(odo_t)
    info = [odo_info] * (n - 1)
    if cfg.wheel_odometry:
        # The wheel odometry as a second chain of edges, with its own (known) noise model: unbiased in scale,
        # which the monocular VO is not.
        a, b = run.trajectory_config.odometry_noise
        for k in range(n - 1):
            d = max(float(np.linalg.norm(run.odom_t[k])), 1e-3)
            E_i.append(k)
            E_j.append(k + 1)
            M_R.append(run.odom_R[k])
            M_t.append(run.odom_t[k])
            info.append(np.diag([1 / (a * d) ** 2] * 3 + [4 / (b * d) ** 2] * 3))
    cands = loop_candidates(run, cfg.loops, seed)
    aliased = aliased_candidates(run, cfg.loops, seed)
    # Every proposal as (j, i, is_true, front-end matches or None), by j (stable: the simulator's own
    # candidates in their order, then the aliased one of the same j).
    proposals: list[tuple[int, int, bool, AliasedCandidate | None]] = [
        (int(j), int(i), bool(t), None) for i, j, t in cands
    ]
    proposals += [(a.j, a.i, False, a) for a in aliased]
    proposals.sort(key=lambda p: p[0])
    robust = cfg.loop_policy == "loose+gnc"
    vcfg = cfg.loose_verify if robust else cfg.verify
    pgo = SolveCounters()
    accepted = accepted_false = 0
    # The policy's default solver (fp64 Cholesky; fp32/mixed: the fp32 factor refined to fp64; 16-bit
    # factors: CG with the static IC preconditioner), warm-started from the last solve ("file": the poses
    # given, not a chordal relaxation).
    pgo_cfg = PGOConfig(
        precision=precision,
        init="file",
        lm=LMConfig(max_iterations=cfg.pgo_max_iterations),
        robust=LOOP_ROBUST if robust else RobustConfig(),
    )
    est_R, est_t = vo_R.copy(), vo_t.copy()  # current best poses (loop-closed up to the last solve)
    solved_upto = 0
    loop_index: list[int] = []  # index of each loop edge in E_i / E_j
    rejected_edges: set = set()  # edges (indices into E_i) the last robust solve rejected
    set_aside: set = set()  # loop edges a robust solve rejected: out of the later solves but the final one

    def solve(upto: int, final: bool = False):
        nonlocal solved_upto, rejected_edges
        # Warm start: keyframes after the last solve follow the VO odometry from the last solved one.
        for k in range(solved_upto + 1, upto + 1):
            est_R[k] = est_R[k - 1] @ odo_R[k - 1]
            est_t[k] = est_t[k - 1] + est_R[k - 1] @ odo_t[k - 1]
        # A loop GNC rejected would cost every later GNC solve its whole μ schedule (the loop's residual sets
        # μ₀): it sits out the solves until the final one, which decides over every loop again.
        keep = [e for e in range(len(E_i)) if E_j[e] <= upto and E_i[e] <= upto and (final or e not in set_aside)]
        g = _graph(
            est_R,
            est_t,
            [E_i[e] for e in keep],
            [E_j[e] for e in keep],
            [M_R[e] for e in keep],
            [M_t[e] for e in keep],
            [info[e] for e in keep],
            upto + 1,
        )
        t0 = time.perf_counter()
        out, rep = optimize_pose_graph(g, pgo_cfg)
        pgo.add(rep, time.perf_counter() - t0)
        rejected_edges = {keep[k] for k in (rep.rejected_edges or [])}
        set_aside.update(rejected_edges)
        est_R[: upto + 1], est_t[: upto + 1] = out.rotations, out.translations
        solved_upto = upto
        return out

    k = 0
    pending = False
    loop_edges = []
    while k < len(proposals):
        j = proposals[k][0]
        added = False
        while k < len(proposals) and proposals[k][0] == j:
            _, i, is_true, matches = proposals[k]
            edge, _ = verify(i, j, vo.snapshots, run, vo.R_cw, vo.t_cw, vcfg, matches=matches)
            if edge is not None:
                loop_index.append(len(E_i))
                E_i.append(i)
                E_j.append(j)
                M_R.append(edge.R)
                M_t.append(edge.t)
                info.append(edge.information)
                loop_edges.append(edge)
                accepted += 1
                accepted_false += int(not is_true)
                added = True
            k += 1
        if added:
            pending = True
        if pending and j - solved_upto >= cfg.pgo_min_gap:
            solve(j)
            pending = False
    graph = solve(n - 1, final=True) if accepted else None
    wrong = np.array([loop_is_wrong(run, e) for e in loop_edges], bool)
    rejected = np.array([e in rejected_edges for e in loop_index], bool)
    if graph is None or rejected.all():
        # Nothing to close (no loop accepted, or GNC rejected every one): the VO's trajectory, as without loops.
        est_R[:], est_t[:] = vo_R, vo_t
        graph = _graph(vo_R, vo_t, E_i, E_j, M_R, M_t, info, n)
    res = PipelineResult(
        run.R_wc,
        run.t_wc,
        vo_R,
        vo_t,
        est_R,
        est_t,
        vo,
        graph,
        candidates=len(proposals),
        true_candidates=int(cands[:, 2].sum()) if len(cands) else 0,
        accepted=accepted,
        accepted_false=accepted_false,
        aliased_candidates=len(aliased),
        wrong=int(wrong.sum()),
        rejected=int(rejected.sum()),
        rejected_wrong=int((rejected & wrong).sum()),
        wrong_kept=int((wrong & ~rejected).sum()),
        loop_policy=cfg.loop_policy,
        loops=loop_edges,
        loop_wrong=wrong,
        loop_rejected=rejected,
        pgo=pgo,
        precision=precision,
        pgo_R=est_R.copy(),
        pgo_t=est_t.copy(),
    )
    # The loops GNC rejected are not fused: their landmark associations are as wrong as their poses.
    kept = [e for e, r in zip(loop_edges, rejected) if not r]
    if kept and cfg.global_ba.enabled:
        res.gba = global_bundle_adjustment(
            run, est_R, est_t, kept, precision, window=cfg.vo.window, config=cfg.global_ba
        )
        if res.gba.ok:
            res.lc_R, res.lc_t = res.gba.R_wc, res.gba.t_wc
    res.seconds = time.perf_counter() - t_start
    return res


def loop_is_wrong(run, edge) -> bool:
    """``edge``'s measured relative pose is off the truth's (``run``) by more than :data:`WRONG_LOOP_M` or
    :data:`WRONG_LOOP_DEG`: a false loop."""
    i, j = edge.i, edge.j
    R_true = run.R_wc[i].T @ run.R_wc[j]
    t_true = run.R_wc[i].T @ (run.t_wc[j] - run.t_wc[i])
    dt = float(np.linalg.norm(np.asarray(edge.t) - t_true))
    dr = math.degrees(float(np.linalg.norm(so3.log(R_true.T @ np.asarray(edge.R)))))
    return dt > WRONG_LOOP_M or dr > WRONG_LOOP_DEG
