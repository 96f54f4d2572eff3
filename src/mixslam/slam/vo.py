"""Sliding-window visual odometry: bundle adjustment over the last N keyframes with a chosen precision.

The front end is simulated (landmark ids are the data association), so this module is the back end of VO:

* a new keyframe is predicted by composing the wheel odometry onto the previous estimate;
* a landmark's *track* is its run of observations without a gap of a whole window; a track seen again after
  it left the window starts a new track (VO keeps no map to re-associate with: that is loop closure's job);
* every ``ba_every`` keyframes, tracks seen twice in the window with enough parallax are triangulated, and
  the window is bundle-adjusted (``mixslam.ba.optimize_bundle``) with the oldest frames fixed: at the start
  frame 0 alone (it defines the world; the scale is set by the odometry rescale after each solve, see
  ``VOConfig.bootstrap_baseline``), later the ``fixed`` oldest frames of a full window (already estimated by
  earlier windows);
* observations whose reprojection error exceeds ``gate`` sigmas after a window solve are dropped.

Each keyframe keeps the estimate of its last window. For loop closure each keyframe also keeps a snapshot of
the landmarks it observed, in its own camera frame, as its last window estimated them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..ba import BAConfig, optimize_bundle
from ..errors import ConfigError, check_config_fields
from ..linear.config import CGConfig
from ..precision import Precision, PrecisionPolicy
from ..problem.bundle import BundleData
from ..problem.camera import pinhole_project
from ..solve.config import LMConfig
from ..solve.report import SolveCounters
from .geometry import triangulate


@dataclass(frozen=True)
class VOConfig:
    """Sliding-window VO settings."""

    window: int = 50
    """Keyframes in the bundle-adjustment window."""
    fixed: int = 5
    """Oldest frames of a full window held fixed (the gauge; they were estimated by earlier windows)."""
    ba_every: int = 5
    """Run the window bundle adjustment every this many keyframes (and at the last one)."""
    max_iterations: int = 100
    """LM iterations per window solve at most. Most windows converge in 5-15; a few (a sharp turn, a burst of
    new tracks) need 20-60, and a window stopped at its cap is where two policies' runs part: the next
    windows start from different points and the gate drops different observations. Measured on the default
    study at the default window 50 (session 7): a cap of 20 left 24 of 200 runs with an unconverged window
    and 2 whose mixed VO ATE differed from fp64's by more than 5% (2.1x and 1.55x); with 100 the windows of
    those runs converge (at most 58 iterations), their ratios are 0.999 and 1.035, and no run of the study
    is above 5%. Windows that converge stop early, so the cap costs time only where it changes the answer."""
    bootstrap_baseline: int = 5
    """While the window holds keyframe 0 (the bootstrap), keyframe 0 is held fixed (the gauge). With
    ``odometry_scale`` (the default) nothing else is: the monocular scale is left free in the solve (the LM
    damping handles that one flat direction) and set by the odometry rescale after it. Without it, keyframe
    ``bootstrap_baseline`` is fixed too, at its odometry prediction, to set the scale.

    Why (measured in session 5 on the default world and the demo world): fixing a second keyframe at its
    odometry prediction imposes that prediction's rotation error (0.3 degrees) on the map. With keyframe 1
    (0.1 m from keyframe 0) the bootstrap windows inflated the map up to 5x and stopped at their LM cap at
    points that differed between policies (4 of 200 study runs off fp64 by more than 5%); with keyframe 5
    they converged, but the error left observations at 5-15 sigmas that the gate dropped (171 of them on
    one demo-world run), which again differed between policies (one bench run at 1.21x). With the scale
    left free, no observation is gated on those runs and fp64's ATE is lower (demo: 6.5 -> 4.7 cm)."""
    bootstrap_max_iterations: int = 100
    """LM iterations at most for the bootstrap windows (they are small; a bootstrap window stopped at its cap
    is where two policies' runs part)."""
    cg_max_iterations: int = 100
    """CG iterations per linear solve at most (CG policies). The converging policies need 20-60 per LM step
    on these windows; the cap bounds the time of naive fp16, which never converges."""
    function_tolerance: float = 1e-8
    """LM stops when a step lowers the cost by less than this fraction. Tighter than Ceres' 1e-6 because the
    window's valley is flat: policies compared on pose error must stop near the same point."""
    min_parallax_deg: float = 3.0
    """A track is triangulated only when two of its rays differ by at least this angle. The depth error of a
    triangulation is about (pixel noise / focal) / parallax times the depth: with 1 px at f = 400, 14% at 1
    degree, 5% at 3 degrees. A point triangulated at 1 degree can slide behind a camera or off to infinity
    during a window solve, and whether it does is decided by the last digits of the solve: measured on the
    first 40 runs of the default study (window 30), 1 degree left 3 runs whose mixed ATE differed from
    fp64's by more than 5% (max 1.19x), 3 degrees none (max 1.024x), for a fp64 mean ATE 3% higher.
    The parallax is measured with the dead-reckoned rotations (keyframe 0 composed with the wheel
    odometry), not the estimates: the same for every policy, so a track at the threshold is triangulated in
    the same window whatever the precision (measured: one study run at 1.08x with the estimated rotations,
    1.001x with the dead-reckoned ones)."""
    gate: float = 5.0
    """Observations with a reprojection error above this many pixel sigmas after a window solve are dropped."""
    odometry_scale: bool = True
    """Monocular VO cannot observe scale. While the window still holds keyframe 0, rescale the map after each
    solve so its path length equals the wheel odometry's over the same keyframes (the scale then rests on
    up to ``window`` odometry steps instead of the first one: measured on the default world, 2.7% -> 0.3%
    scale error); later windows inherit it from their fixed frames."""

    budget_s: float = 0.1
    """Real-time budget of one window solve in seconds (the article's 10 Hz keyframe rate); the report counts
    the windows over it (``vo_window_time_s``)."""

    def __post_init__(self):
        check_config_fields(
            self,
            ints={
                "window": 2,
                "fixed": 1,
                "ba_every": 1,
                "max_iterations": 1,
                "bootstrap_baseline": 1,
                "bootstrap_max_iterations": 1,
                "cg_max_iterations": 1,
            },
            nonnegative=("function_tolerance", "min_parallax_deg"),
            positive=("gate", "budget_s"),
            choices={"odometry_scale": (True, False)},
        )
        if self.fixed >= self.window:
            raise ConfigError(
                f"VOConfig.fixed must be below the window ({self.window}): a window needs free frames, got {self.fixed}"
            )


@dataclass
class VOResult:
    """Keyframe estimates and what the window solves did."""

    R_cw: np.ndarray
    """(n, 3, 3) world -> camera rotations."""
    t_cw: np.ndarray
    """(n, 3) world -> camera translations."""
    snapshots: list
    """Per keyframe: (landmark ids (q,), points in that camera's frame (q, 3)) from its last window."""
    ba: SolveCounters = field(default_factory=SolveCounters)
    """The window bundle adjustments: solves, LM and CG iterations, fp16 overflows, fallbacks, unconverged
    solves, statuses and their seconds."""
    gated: int = 0
    """Observations dropped by the reprojection gate."""
    seconds: float = 0.0
    """The whole VO run."""

    @property
    def R_wc(self) -> np.ndarray:
        return np.swapaxes(self.R_cw, 1, 2)

    @property
    def t_wc(self) -> np.ndarray:
        return -np.einsum("nji,nj->ni", self.R_cw, self.t_cw)


def track_ids(frame: np.ndarray, landmark: np.ndarray, window: int) -> np.ndarray:
    """Track id per observation: a landmark's observations split where it went unseen for a whole window."""
    order = np.lexsort((frame, landmark))
    lm, fr = landmark[order], frame[order]
    new = np.ones(len(order), bool)
    new[1:] = (lm[1:] != lm[:-1]) | (fr[1:] - fr[:-1] >= window)
    tid = np.cumsum(new) - 1
    out = np.empty(len(order), np.int64)
    out[order] = tid
    return out


def _compose_odometry(R_cw, t_cw, odom_R, odom_t):
    """T_wc(k+1) = T_wc(k) · odom, in world -> camera form."""
    R_wc, t_wc = R_cw.T, -R_cw.T @ t_cw
    R2 = R_wc @ odom_R
    t2 = t_wc + R_wc @ odom_t
    return R2.T, -R2.T @ t2


def _keep_measured_choice(policy: PrecisionPolicy, report, lo: int) -> PrecisionPolicy:
    """An adaptive policy (``mixed``/``auto``) measures its Schur solver in fp32 and fp64 on a solve's first two
    steps. The VO windows are one problem solved again and again, so the choice of the first full window (not
    the bootstrap: fewer frames) holds for the rest of the run instead of being measured in every window
    (measured over ``mixslam sim --trajectories 20``: the per-window measurement made mixed's median window
    23.0 ms against fp64's 19.9 ms)."""
    direct = report.direct
    if not policy.adaptive or lo == 0 or direct is None or not direct.choice:
        return policy
    if direct.choice.startswith("fp64"):
        return policy.replace(factor=Precision.FP64, adaptive=False)
    if direct.choice.startswith("fp32 Schur + PCG:"):  # measured and kept (not "... for the first step")
        return policy.replace(adaptive=False)
    return policy


def run_vo(
    run, precision: str = "fp64", solver: str | None = None, config: VOConfig | None = None, first_pose=None
) -> VOResult:
    """Sliding-window VO over a simulated run (``mixslam.sim.world.Run``).

    ``first_pose``: (R_cw, t_cw) of keyframe 0 (default: its ground truth, which defines the world frame).
    """
    cfg = config or VOConfig()
    t_start = time.perf_counter()
    policy = PrecisionPolicy.preset(precision, "ba")
    n = len(run.R_wc)
    K = np.asarray(run.intrinsics, dtype=np.float64)
    sigma = float(run.pixel_noise) if run.pixel_noise > 0 else 1.0
    frame = np.asarray(run.obs_frame, np.int64)
    track = track_ids(frame, np.asarray(run.obs_landmark, np.int64), cfg.window)
    ntracks = int(track.max()) + 1 if track.size else 0
    landmark_of_track = np.zeros(ntracks, np.int64)
    landmark_of_track[track] = run.obs_landmark
    pixel = np.asarray(run.obs_pixel, np.float64)
    active = np.ones(len(frame), bool)  # not gated out
    pts = np.zeros((ntracks, 3))
    init = np.zeros(ntracks, bool)
    R_cw = np.zeros((n, 3, 3))
    t_cw = np.zeros((n, 3))
    if first_pose is None:
        R_cw[0] = run.R_wc[0].T
        t_cw[0] = -run.R_wc[0].T @ run.t_wc[0]
    else:
        R_cw[0], t_cw[0] = first_pose
    # Dead-reckoned rotations (keyframe 0 composed with the wheel odometry): the same for every policy, so
    # the parallax test that decides when a track is triangulated cannot differ between policies.
    R_dr = np.zeros((n, 3, 3))
    R_dr[0] = R_cw[0]
    res = VOResult(R_cw, t_cw, [(np.zeros(0, np.int64), np.zeros((0, 3)))] * n)
    lm = LMConfig(max_iterations=cfg.max_iterations, initial_lambda=1e-4, function_tolerance=cfg.function_tolerance)
    cg = CGConfig(max_iterations=cfg.cg_max_iterations)
    by_frame = np.argsort(frame, kind="stable")
    frame_ptr = np.searchsorted(frame[by_frame], np.arange(n + 1))
    for k in range(1, n):
        R_cw[k], t_cw[k] = _compose_odometry(R_cw[k - 1], t_cw[k - 1], run.odom_R[k - 1], run.odom_t[k - 1])
        R_dr[k] = (R_dr[k - 1].T @ run.odom_R[k - 1]).T
        if k % cfg.ba_every and k != n - 1:
            continue
        lo = max(0, k - cfg.window + 1)
        sel = by_frame[frame_ptr[lo] : frame_ptr[k + 1]]
        sel = sel[active[sel]]
        tr = track[sel]
        # Triangulate tracks seen at least twice in the window that have no estimate yet.
        counts = np.bincount(tr, minlength=ntracks)
        want = (counts >= 2) & ~init
        if want.any():
            m = want[tr]
            cand, ok = triangulate(
                R_cw, t_cw, tr[m], frame[sel][m], pixel[sel][m], K, ntracks, cfg.min_parallax_deg, parallax_R_cw=R_dr
            )
            newly = want & ok
            pts[newly] = cand[newly]
            init |= newly
        use = init[tr] & (counts[tr] >= 2)
        sel, tr = sel[use], tr[use]
        if sel.size == 0:
            continue
        uniq, local_pt = np.unique(tr, return_inverse=True)
        frames_w = np.arange(lo, k + 1)
        local_cam = frame[sel] - lo
        cams = np.concatenate([R_cw[lo : k + 1].reshape(-1, 9), t_cw[lo : k + 1]], axis=1)
        fixed = np.zeros(len(frames_w), bool)
        if lo == 0:
            fixed[0] = True
            if not cfg.odometry_scale:  # else the scale is left free here and set by the rescale below
                fixed[min(cfg.bootstrap_baseline, len(fixed) - 1)] = True
        else:
            fixed[: cfg.fixed] = True
        data = BundleData(
            "pinhole", cams, pts[uniq], pixel[sel], local_cam, local_pt, K, sigma, fixed, source=f"VO window {lo}..{k}"
        )
        t0 = time.perf_counter()
        lm_w = replace(lm, max_iterations=cfg.bootstrap_max_iterations) if lo == 0 else lm
        out, rep = optimize_bundle(data, BAConfig(precision=policy, solver=solver, lm=lm_w, cg=cg))
        res.ba.add(rep, time.perf_counter() - t0)
        policy = _keep_measured_choice(policy, rep, lo)
        R_cw[lo : k + 1] = out.cameras[:, :9].reshape(-1, 3, 3)
        t_cw[lo : k + 1] = out.cameras[:, 9:12]
        pts[uniq] = out.points
        if lo == 0 and cfg.odometry_scale:
            # Monocular scale from the wheel odometry: while the window still holds keyframe 0, scale the
            # map about camera 0 so the VO path 0..k is as long as the odometry's (averaging k steps' noise).
            c = -np.einsum("nji,nj->ni", R_cw[: k + 1], t_cw[: k + 1])
            vo_len = float(np.sum(np.linalg.norm(np.diff(c, axis=0), axis=1)))
            odo_len = float(np.sum(np.linalg.norm(run.odom_t[:k], axis=1)))
            if vo_len > 0:
                sc = odo_len / vo_len
                c_new = c[0] + sc * (c[1:] - c[0])
                t_cw[1 : k + 1] = -np.einsum("nij,nj->ni", R_cw[1 : k + 1], c_new)
                pts[init] = c[0] + sc * (pts[init] - c[0])
        # Gate: drop observations the window cannot explain.
        obs_cams = np.concatenate([R_cw[frame[sel]].reshape(-1, 9), t_cw[frame[sel]]], axis=1)
        pred, depth = pinhole_project(obs_cams, pts[tr], K)
        err = np.linalg.norm(pred - pixel[sel], axis=1) / sigma
        bad = (err > cfg.gate) | (depth <= 0)
        active[sel[bad]] = False
        res.gated += int(bad.sum())
        # Snapshots: each window frame's landmarks in its own camera frame.
        for f in frames_w:
            o = sel[(frame[sel] == f) & ~bad]
            if o.size:
                Pc = pts[track[o]] @ R_cw[f].T + t_cw[f]
                res.snapshots[f] = (landmark_of_track[track[o]], Pc)
    res.seconds = time.perf_counter() - t_start
    return res
