"""Residuals, Jacobian blocks and fp64 costs of pose graphs and bundle adjustment on a JAX device.

Same conventions as the CPU code, so the two backends reach the same optima:

* Between edges (:mod:`mixslam.problem.between`): D = Z⁻¹ Xi⁻¹ Xj, e = (t_D, wrap(θ_D)) in 2D and
  (t_D, qvec(R_D), w >= 0) in 3D; Jacobians w.r.t. the retraction t <- t + R ρ, R <- R Exp(φ) (tangent
  (ρ, φ)); whitened by the upper factor W of Ω (Wᵀ W = Ω); the position difference tj - ti is taken on the
  fp64 state and only then narrowed to the residual precision; cost 0.5 Σ eᵀΩe in fp64.
* Reprojections (:mod:`mixslam.problem.reprojection`): BAL (9 numbers per camera, additive update, Rodrigues
  with Ceres' small-angle branch, the right Jacobian for d/dw) and pinhole (SE(3) pose, tangent (ρ, φ) of
  :func:`mixslam.lie.se3.retract`), the depth guard (|P.z| < min_depth clamped, its column of the Jacobian
  zero, behind / clamped counted), residuals divided by sigma; every input converted to the residual dtype
  first, so fp32 evaluation is fp32 arithmetic.

Two ways to get the Jacobian blocks (``method``): ``"closed"``, the CPU's closed forms vectorized, and
``"jacfwd"``, forward-mode autodiff of the per-row residual w.r.t. the same tangent parametrization (the
rotation updates enter to first order, I + [φ]x, exact for a derivative at φ = 0). They agree to rounding;
``"closed"`` is the default (faster, see ``docs/results/backend_candidates.txt``) and ``"jacfwd"`` is the
template for a new factor without a hand-derived Jacobian.

Every fp32 product runs at ``Precision.HIGHEST`` (:data:`~.jax_linearization.HIGHEST`): no TF32 on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..problem.between import sqrt_information
from ..problem.bundle import MODELS
from ..problem.camera import min_depth_for, small_angle2_for
from .jax_device import jax, jnp
from .jax_linearization import HIGHEST, DeviceLinearization

__all__ = [
    "METHODS",
    "PoseGraphArrays",
    "pose_graph_arrays",
    "between_linearize",
    "pose_graph_linearization",
    "pose_graph_cost",
    "BundleArrays",
    "bundle_arrays",
    "reprojection_linearize",
    "bundle_linearization",
    "reprojection_cost",
]

METHODS = ("closed", "jacfwd")
"""The values of ``method``: closed-form Jacobians or forward-mode autodiff."""

_F64 = np.dtype(np.float64)


def _check(dtype, method: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"residuals are evaluated in float64 or float32, not {dt}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return dt


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


def _mv(a, x):
    return jnp.einsum("...ij,...j->...i", a, x, precision=HIGHEST)


def _mT(a):
    return jnp.swapaxes(a, -1, -2)


def _hat(v):
    z = jnp.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return jnp.stack([jnp.stack([z, -w, y], -1), jnp.stack([w, z, -x], -1), jnp.stack([-y, x, z], -1)], -2)


def _blocks(tl, tr, bl, br):
    """[[tl, tr], [bl, br]] of batched blocks."""
    return jnp.concatenate([jnp.concatenate([tl, tr], -1), jnp.concatenate([bl, br], -1)], -2)


# ---------------------------------------------------------------------------------------------------------
# pose graphs
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoseGraphArrays:
    """A :class:`~mixslam.problem.pose_graph.PoseGraph`'s edges and variable numbering as device arrays (the
    poses, the state, are passed apart). A JAX pytree; ``dim``, ``nv`` and ``num_poses`` are static."""

    edge_i: Any
    edge_j: Any
    meas_R: Any
    """(m, d, d) fp64 measured rotations."""
    meas_t: Any
    """(m, d) fp64 measured translations."""
    information: Any
    """(m, k, k) fp64 Ω."""
    W: Any
    """(m, k, k) fp64 upper factors, Wᵀ W = Ω."""
    ia: Any
    """(m,) variable of pose i (-1: fixed)."""
    ib: Any
    """(m,) variable of pose j (-1: fixed)."""
    var_of_pose: Any
    """(n,) variable of each pose (-1: fixed)."""
    dim: int
    nv: int
    num_poses: int

    @property
    def p(self) -> int:
        return 3 if self.dim == 2 else 6


jax.tree_util.register_dataclass(
    PoseGraphArrays,
    data_fields=["edge_i", "edge_j", "meas_R", "meas_t", "information", "W", "ia", "ib", "var_of_pose"],
    meta_fields=["dim", "nv", "num_poses"],
)


def pose_graph_arrays(graph, device=None) -> PoseGraphArrays:
    """The edges of ``graph`` (a :class:`~mixslam.problem.pose_graph.PoseGraph`) on ``device`` (a JAX device;
    None: JAX's default), numbered as :class:`mixslam.pgo.PoseGraphProblem` numbers them."""
    free = ~graph.fixed
    var = np.full(graph.num_poses, -1, np.int64)
    var[free] = np.arange(int(free.sum()))

    def put(x):
        return jax.device_put(np.ascontiguousarray(x), device)

    return PoseGraphArrays(
        put(graph.edge_i.astype(np.int64)),
        put(graph.edge_j.astype(np.int64)),
        put(graph.meas_rotations.astype(np.float64)),
        put(graph.meas_translations.astype(np.float64)),
        put(graph.information.astype(np.float64)),
        put(sqrt_information(graph.information)),
        put(var[graph.edge_i]),
        put(var[graph.edge_j]),
        put(var),
        int(graph.dim),
        int(free.sum()),
        int(graph.num_poses),
    )


def _wrap(theta):
    return jnp.mod(theta + np.pi, 2.0 * np.pi) - np.pi


def _to_quaternion(R):
    """Rotation matrices (..., 3, 3) -> unit quaternions (x, y, z, w), w >= 0: Shepperd's method with the
    case choice of :func:`mixslam.lie.so3.to_quaternion` (every case computed, the right one selected)."""
    Rij = [[R[..., i, j] for j in range(3)] for i in range(3)]
    tr = Rij[0][0] + Rij[1][1] + Rij[2][2]
    diag = jnp.stack([Rij[0][0], Rij[1][1], Rij[2][2]], -1)
    case = jnp.where(tr > jnp.max(diag, -1), 3, jnp.argmax(diag, -1))
    s = jnp.sqrt(1.0 + tr) * 2.0
    q = jnp.stack([(Rij[2][1] - Rij[1][2]) / s, (Rij[0][2] - Rij[2][0]) / s, (Rij[1][0] - Rij[0][1]) / s, 0.25 * s], -1)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        s = jnp.sqrt(1.0 + Rij[i][i] - Rij[j][j] - Rij[k][k]) * 2.0
        comp = [None] * 4
        comp[i] = 0.25 * s
        comp[3] = (Rij[k][j] - Rij[j][k]) / s
        comp[j] = (Rij[j][i] + Rij[i][j]) / s
        comp[k] = (Rij[k][i] + Rij[i][k]) / s
        q = jnp.where((case == i)[..., None], jnp.stack(comp, -1), q)
    q = q * jnp.where(q[..., 3] < 0, -1.0, 1.0).astype(q.dtype)[..., None]
    return q / jnp.linalg.norm(q, axis=-1, keepdims=True)


def _between_error(Ri, Rj, dtij, Rz, tz):
    """g2o error (..., k) and the intermediates of the closed-form Jacobians."""
    RiT, RzT = _mT(Ri), _mT(Rz)
    u = _mv(RiT, dtij)
    tD = _mv(RzT, u - tz)
    RD = _mm(_mm(RzT, RiT), Rj)
    if Ri.shape[-1] == 2:
        theta = _wrap(jnp.arctan2(RD[..., 1, 0], RD[..., 0, 0]))
        return jnp.concatenate([tD, theta[..., None]], -1), (u, RzT, RD, None)
    q = _to_quaternion(RD)
    return jnp.concatenate([tD, q[..., :3]], -1), (u, RzT, RD, q)


def _between_closed(Ri, Rj, dtij, Rz, tz):
    e, (u, RzT, RD, q) = _between_error(Ri, Rj, dtij, Rz, tz)
    m, dt = e.shape[0], e.dtype
    if Ri.shape[-1] == 2:
        Su = jnp.stack([-u[:, 1], u[:, 0]], 1)
        col = -_mv(RzT, Su)[:, :, None]
        zero21 = jnp.zeros((m, 2, 1), dt)
        one = jnp.ones((m, 1, 1), dt)
        Ji = _blocks(-RzT, col, jnp.zeros((m, 1, 2), dt), -one)
        Jj = _blocks(RD, zero21, jnp.zeros((m, 1, 2), dt), one)
        return e, Ji, Jj
    w = q[:, 3]
    M = 0.5 * (w[:, None, None] * jnp.eye(3, dtype=dt) + _hat(q[:, :3]))
    Z = jnp.zeros((m, 3, 3), dt)
    Ji = _blocks(-RzT, _mm(RzT, _hat(u)), Z, -_mm(_mm(M, _mT(Rj)), Ri))
    Jj = _blocks(RD, Z, Z, M)
    return e, Ji, Jj


def _first_order_rotation(Rot, phi):
    """R (I + [φ]) (2D: φ scalar): exact value and derivative at φ = 0, all a Jacobian at 0 needs."""
    if Rot.shape[-1] == 2:
        S = jnp.stack([jnp.stack([jnp.zeros_like(phi), -phi]), jnp.stack([phi, jnp.zeros_like(phi)])])
        return Rot + _mm(Rot, S)
    return Rot + _mm(Rot, _hat(phi))


def _between_jacfwd(Ri, Rj, dtij, Rz, tz):
    d = Ri.shape[-1]

    def edge(di, dj, Ri, Rj, dtij, Rz, tz):
        Ri2 = _first_order_rotation(Ri, di[d] if d == 2 else di[3:])
        Rj2 = _first_order_rotation(Rj, dj[d] if d == 2 else dj[3:])
        dt2 = dtij + _mv(Rj, dj[:d]) - _mv(Ri, di[:d])
        return _between_error(Ri2, Rj2, dt2, Rz, tz)[0]

    p = 3 if d == 2 else 6
    zero = jnp.zeros((Ri.shape[0], p), Ri.dtype)
    e = _between_error(Ri, Rj, dtij, Rz, tz)[0]
    Ji, Jj = jax.vmap(jax.jacfwd(edge, argnums=(0, 1)))(zero, zero, Ri, Rj, dtij, Rz, tz)
    return e, Ji, Jj


@partial(jax.jit, static_argnames=("dt", "method", "jacobians"))
def _between(pg: PoseGraphArrays, R, t, dt, method, jacobians):
    Ri, Rj = R[pg.edge_i].astype(dt), R[pg.edge_j].astype(dt)
    # the position difference on the fp64 state, then narrowed (its rounding relative to the edge length)
    dtij = (t[pg.edge_j] - t[pg.edge_i]).astype(dt)
    Rz, tz = pg.meas_R.astype(dt), pg.meas_t.astype(dt)
    if not jacobians:
        return _between_error(Ri, Rj, dtij, Rz, tz)[0], None, None
    if method == "closed":
        return _between_closed(Ri, Rj, dtij, Rz, tz)
    return _between_jacfwd(Ri, Rj, dtij, Rz, tz)


def between_linearize(pg: PoseGraphArrays, R, t, dtype=np.float64, *, method: str = "closed", jacobians=True):
    """Unwhitened errors (m, k) and Jacobian blocks (m, k, p) w.r.t. pose i and pose j in ``dtype`` at the
    poses ``R`` (n, d, d), ``t`` (n, d) (fp64): the device twin of :func:`mixslam.problem.between.linearize`.
    Without ``jacobians`` the blocks are None."""
    dt = _check(dtype, method)
    return _between(pg, jnp.asarray(R, jnp.float64), jnp.asarray(t, jnp.float64), dt, method, bool(jacobians))


@partial(jax.jit, static_argnames=("dt", "method"))
def _pg_linearization(pg: PoseGraphArrays, R, t, dt, method):
    e, Ji, Jj = _between(pg, R, t, dt, method, True)
    W = pg.W.astype(dt)
    r = _mv(W, e)
    return DeviceLinearization(r, _mm(W, Ji), _mm(W, Jj), pg.ia, pg.ib, pg.nv, pg.p)


def pose_graph_linearization(pg: PoseGraphArrays, R, t, dtype=np.float64, *, method: str = "closed"):
    """The whitened :class:`~.jax_linearization.DeviceLinearization` (r = W e, A = W Ji, B = W Jj in ``dtype``)
    that :meth:`mixslam.pgo.PoseGraphProblem.linearize` builds (without a robust loss)."""
    dt = _check(dtype, method)
    return _pg_linearization(pg, jnp.asarray(R, jnp.float64), jnp.asarray(t, jnp.float64), dt, method)


@partial(jax.jit, static_argnames=("dt",))
def _pg_cost(pg: PoseGraphArrays, R, t, dt):
    e = _between(pg, R, t, dt, "closed", False)[0]
    if dt == _F64:
        return 0.5 * jnp.einsum("mi,mij,mj->", e, pg.information, e, precision=HIGHEST)
    we = _mv(pg.W.astype(dt), e)
    return (0.5 * jnp.sum(we * we, dtype=dt)).astype(jnp.float64)


def pose_graph_cost(pg: PoseGraphArrays, R, t, dtype=np.float64):
    """0.5 Σ eᵀΩe in fp64 (g2o's chi2 / 2; ``dtype`` float32: 0.5 Σ ‖W e‖² in fp32, the CPU's fp32 policy cost),
    a 0-d fp64 device array."""
    dt = _check(dtype, "closed")
    return _pg_cost(pg, jnp.asarray(R, jnp.float64), jnp.asarray(t, jnp.float64), dt)


# ---------------------------------------------------------------------------------------------------------
# bundle adjustment
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleArrays:
    """A :class:`~mixslam.problem.bundle.BundleData`'s observations and variable numbering as device arrays
    (cameras and points, the state, are passed apart). A JAX pytree; the model, sizes and sigma are static."""

    cam_idx: Any
    pt_idx: Any
    obs: Any
    """(m, 2) fp64 pixels."""
    intrinsics: Any
    """(4,) fp64 (fx, fy, cx, cy) (pinhole; zeros for BAL)."""
    ia: Any
    """(m,) free-camera variable (-1: fixed)."""
    ib: Any
    """(m,) free-point variable (-1: fixed)."""
    frozen_row: Any
    """(m,) bool: the observation's camera is a fixed BAL camera (its pose columns are zeroed, its f, k1, k2
    stay free; :class:`mixslam.ba.BundleProblem`)."""
    var_of_cam: Any
    var_of_pt: Any
    model: str
    sigma: float
    nv: int
    nb: int

    @property
    def pc(self) -> int:
        return MODELS[self.model][1]


jax.tree_util.register_dataclass(
    BundleArrays,
    data_fields=["cam_idx", "pt_idx", "obs", "intrinsics", "ia", "ib", "frozen_row", "var_of_cam", "var_of_pt"],
    meta_fields=["model", "sigma", "nv", "nb"],
)


def bundle_arrays(data, device=None) -> BundleArrays:
    """The observations of ``data`` (a :class:`~mixslam.problem.bundle.BundleData`) on ``device``, numbered as
    :class:`mixslam.ba.BundleProblem` numbers them (a fixed BAL camera keeps f, k1, k2 free)."""
    fixed_c, fixed_p = data.fixed_cameras, data.fixed_points
    frozen = fixed_c.copy() if data.model == "bal" else np.zeros(data.num_cameras, bool)
    free_c = ~fixed_c | frozen
    var_c = np.full(data.num_cameras, -1, np.int64)
    var_c[free_c] = np.arange(int(free_c.sum()))
    var_p = np.full(data.num_points, -1, np.int64)
    var_p[~fixed_p] = np.arange(int((~fixed_p).sum()))

    def put(x):
        return jax.device_put(np.ascontiguousarray(x), device)

    K = np.asarray(data.intrinsics, np.float64) if data.model == "pinhole" else np.zeros(4)
    return BundleArrays(
        put(data.cam_idx.astype(np.int64)),
        put(data.pt_idx.astype(np.int64)),
        put(data.observations.astype(np.float64)),
        put(K),
        put(var_c[data.cam_idx]),
        put(var_p[data.pt_idx]),
        put(frozen[data.cam_idx]),
        put(var_c),
        put(var_p),
        data.model,
        float(data.sigma),
        int(free_c.sum()),
        int((~fixed_p).sum()),
    )


def _bal_rotation(w, small2, dt):
    """R(w) and Jr(w) (..., 3, 3) in ``dt``: the branches and coefficients of the CPU kernel."""
    w0, w1, w2 = w[..., 0], w[..., 1], w[..., 2]
    th2 = w0 * w0 + w1 * w1 + w2 * w2
    small = th2 <= small2
    th = jnp.sqrt(jnp.where(small, dt.type(1), th2))
    sn = jnp.sin(th)
    h = jnp.sin(th * dt.type(0.5)) / th
    s = jnp.where(small, dt.type(1), sn / th)
    cc = jnp.where(small, dt.type(0), dt.type(2) * h * h)
    a = jnp.where(small, dt.type(0.5), cc)
    b = jnp.where(small, dt.type(0), (th - sn) / (th * th * th))
    # K² = w wᵀ - θ² I without cancellation on the diagonal
    K2 = jnp.stack(
        [
            jnp.stack([-(w1 * w1 + w2 * w2), w0 * w1, w0 * w2], -1),
            jnp.stack([w0 * w1, -(w0 * w0 + w2 * w2), w1 * w2], -1),
            jnp.stack([w0 * w2, w1 * w2, -(w0 * w0 + w1 * w1)], -1),
        ],
        -2,
    )
    K = _hat(w)
    eye = jnp.eye(3, dtype=dt)
    R = eye + s[..., None, None] * K + cc[..., None, None] * K2
    Jr = eye - a[..., None, None] * K + b[..., None, None] * K2
    return R, Jr


def _guard(z, md, front: float):
    """(guarded depth, clamped): |z| < md replaced by ±md (0 gets the in-front sign ``front``)."""
    clamped = jnp.abs(z) < md
    if front < 0:  # BAL: z > 0 -> md, else -md
        signed = jnp.where(z > 0, md, -md)
    else:  # pinhole: z < 0 -> -md, else md
        signed = jnp.where(z < 0, -md, md)
    return jnp.where(clamped, signed.astype(z.dtype), z), clamped


def _bal_residual(R, cam, X, obs, sigma, md):
    """BAL residual (..., 2) of one or many observations, the raw depth and the clamp mask."""
    P = _mv(R, X) + cam[..., 3:6]
    z, clamped = _guard(P[..., 2], md, -1.0)
    p = -P[..., 0:2] / z[..., None]
    n2 = p[..., 0] * p[..., 0] + p[..., 1] * p[..., 1]
    f, k1, k2 = cam[..., 6], cam[..., 7], cam[..., 8]
    rd = 1 + k1 * n2 + k2 * n2 * n2
    fr = f * rd
    r = (fr[..., None] * p - obs) / sigma
    return r, P[..., 2], clamped, (p, n2, rd, fr, f, k1, k2, z)


def _bal_closed(cams, X, obs, cam_idx, sigma, md, small2, dt):
    Rc, Jrc = _bal_rotation(cams[:, 0:3], small2, dt)  # once per camera
    R, Jr = Rc[cam_idx], Jrc[cam_idx]
    cam = cams[cam_idx]
    r, depth, clamped, (p, n2, rd, fr, f, k1, k2, z) = _bal_residual(R, cam, X, obs, sigma, md)
    inv_s = dt.type(1) / sigma
    p0, p1 = p[:, 0], p[:, 1]
    g = 2 * (k1 + 2 * k2 * n2)
    fg = f * g
    M00 = fr + fg * p0 * p0
    M01 = fg * p0 * p1
    M11 = fr + fg * p1 * p1
    iz = -inv_s / z
    zero = jnp.zeros_like(iz)
    J02 = jnp.where(clamped, zero, (M00 * p0 + M01 * p1) * iz)
    J12 = jnp.where(clamped, zero, (M01 * p0 + M11 * p1) * iz)
    J = jnp.stack([jnp.stack([M00 * iz, M01 * iz, J02], -1), jnp.stack([M01 * iz, M11 * iz, J12], -1)], -2)
    B = _mm(J, R)
    u = jnp.cross(X[:, None, :], B)  # row a of J R: -(aᵀ [X]x) = X × a
    A = jnp.concatenate(
        [
            _mm(u, Jr),
            J,
            ((rd[:, None] * p) * inv_s)[:, :, None],
            ((f * n2 * inv_s)[:, None] * p)[:, :, None],
            ((f * n2 * inv_s * n2)[:, None] * p)[:, :, None],
        ],
        -1,
    )
    return r, A, B, depth, clamped


def _pinhole_residual(R, t, X, obs, K, sigma, md):
    P = _mv(R, X) + t
    z, clamped = _guard(P[..., 2], md, 1.0)
    x, y = P[..., 0] / z, P[..., 1] / z
    r = jnp.stack([(K[0] * x + K[2] - obs[..., 0]) / sigma, (K[1] * y + K[3] - obs[..., 1]) / sigma], -1)
    return r, P[..., 2], clamped, (x, y, z)


def _pinhole_closed(cams, X, obs, cam_idx, K, sigma, md, dt):
    cam = cams[cam_idx]
    R = cam[:, 0:9].reshape(-1, 3, 3)
    r, depth, clamped, (x, y, z) = _pinhole_residual(R, cam[:, 9:12], X, obs, K, sigma, md)
    iz = (dt.type(1) / sigma) / z
    J00, J11 = K[0] * iz, K[1] * iz
    zero = jnp.zeros_like(iz)
    J02 = jnp.where(clamped, zero, -J00 * x)
    J12 = jnp.where(clamped, zero, -J11 * y)
    a0 = J00[:, None] * R[:, 0, :] + J02[:, None] * R[:, 2, :]
    a1 = J11[:, None] * R[:, 1, :] + J12[:, None] * R[:, 2, :]
    B = jnp.stack([a0, a1], 1)
    A = jnp.concatenate([B, jnp.cross(X[:, None, :], B)], -1)
    return r, A, B, depth, clamped


def _reprojection_jacfwd(model, cams, X, obs, cam_idx, K, sigma, md, small2, dt):
    cam = cams[cam_idx]
    if model == "bal":

        def row(c, x, o):
            R, _ = _bal_rotation(c[0:3], small2, dt)
            return _bal_residual(R, c, x, o, sigma, md)[0]

        A, B = jax.vmap(jax.jacfwd(row, argnums=(0, 1)))(cam, X, obs)
        R = _bal_rotation(cam[:, 0:3], small2, dt)[0]
        r, depth, clamped, _ = _bal_residual(R, cam, X, obs, sigma, md)
        return r, A, B, depth, clamped

    def row_pin(delta, x, c, o):
        R = c[0:9].reshape(3, 3)
        return _pinhole_residual(R + _mm(R, _hat(delta[3:])), c[9:12] + _mv(R, delta[:3]), x, o, K, sigma, md)[0]

    zero = jnp.zeros((cam.shape[0], 6), dt)
    A, B = jax.vmap(jax.jacfwd(row_pin, argnums=(0, 1)))(zero, X, cam, obs)
    R = cam[:, 0:9].reshape(-1, 3, 3)
    r, depth, clamped, _ = _pinhole_residual(R, cam[:, 9:12], X, obs, K, sigma, md)
    return r, A, B, depth, clamped


@partial(jax.jit, static_argnames=("dt", "md", "method", "jacobians"))
def _reprojection(ba: BundleArrays, cameras, points, dt, md, method, jacobians):
    cams = cameras.astype(dt)
    X = points.astype(dt)[ba.pt_idx]
    obs = ba.obs.astype(dt)
    K = ba.intrinsics.astype(dt)
    sigma = dt.type(ba.sigma)
    mdv = dt.type(md)
    small2 = dt.type(small_angle2_for(dt))
    if not jacobians:
        cam = cams[ba.cam_idx]
        if ba.model == "bal":
            R = _bal_rotation(cams[:, 0:3], small2, dt)[0][ba.cam_idx]
            r, depth, clamped, _ = _bal_residual(R, cam, X, obs, sigma, mdv)
        else:
            r, depth, clamped, _ = _pinhole_residual(cam[:, 0:9].reshape(-1, 3, 3), cam[:, 9:12], X, obs, K, sigma, mdv)
        A = B = None
    elif method == "jacfwd":
        r, A, B, depth, clamped = _reprojection_jacfwd(ba.model, cams, X, obs, ba.cam_idx, K, sigma, mdv, small2, dt)
    elif ba.model == "bal":
        r, A, B, depth, clamped = _bal_closed(cams, X, obs, ba.cam_idx, sigma, mdv, small2, dt)
    else:
        r, A, B, depth, clamped = _pinhole_closed(cams, X, obs, ba.cam_idx, K, sigma, mdv, dt)
    behind = depth >= 0 if ba.model == "bal" else depth <= 0
    return r, A, B, jnp.sum(behind), jnp.sum(clamped)


def _min_depth(dt: np.dtype, min_depth: float | None) -> float:
    md = min_depth_for(dt, min_depth)
    if not md > 0:
        raise ValueError(f"min_depth must be positive, got {min_depth}")
    return float(md)


def reprojection_linearize(
    ba: BundleArrays, cameras, points, dtype=np.float64, *, min_depth=None, method="closed", jacobians=True
):
    """Whitened residuals (m, 2), camera blocks (m, 2, pc), point blocks (m, 2, 3) (None without
    ``jacobians``), behind and clamped counts (0-d device ints), in ``dtype`` arithmetic: the device twin of
    :func:`mixslam.problem.reprojection.linearize`. ``min_depth``: the depth clamp (default
    :data:`mixslam.problem.camera.MIN_DEPTH` of ``dtype``)."""
    dt = _check(dtype, method)
    md = _min_depth(dt, min_depth)
    cams, pts = jnp.asarray(cameras, jnp.float64), jnp.asarray(points, jnp.float64)
    return _reprojection(ba, cams, pts, dt, md, method, bool(jacobians))


@partial(jax.jit, static_argnames=("dt", "md", "method"))
def _ba_linearization(ba: BundleArrays, cameras, points, dt, md, method):
    r, A, B, _, _ = _reprojection(ba, cameras, points, dt, md, method, True)
    keep = jnp.concatenate([jnp.zeros(6, bool), jnp.ones(A.shape[-1] - 6, bool)])
    A = jnp.where(ba.frozen_row[:, None, None] & ~keep[None, None, :], jnp.zeros((), dt), A)
    return DeviceLinearization(r, A, B, ba.ia, ba.ib, ba.nv, ba.pc, ba.nb, 3)


def bundle_linearization(ba: BundleArrays, cameras, points, dtype=np.float64, *, min_depth=None, method="closed"):
    """The :class:`~.jax_linearization.DeviceLinearization` that :meth:`mixslam.ba.BundleProblem.linearize`
    builds (a fixed BAL camera's pose columns zeroed; without a robust loss)."""
    dt = _check(dtype, method)
    md = _min_depth(dt, min_depth)
    cams, pts = jnp.asarray(cameras, jnp.float64), jnp.asarray(points, jnp.float64)
    return _ba_linearization(ba, cams, pts, dt, md, method)


def reprojection_cost(ba: BundleArrays, cameras, points, dtype=np.float64, *, min_depth=None):
    """0.5 Σ r² of the ``dtype`` residuals, summed in fp64 (:func:`mixslam.problem.reprojection.cost`; with
    the default fp64 it is the cost the CPU reports), a 0-d fp64 device array."""
    r = reprojection_linearize(ba, cameras, points, dtype, min_depth=min_depth, jacobians=False)[0]
    r64 = r.astype(jnp.float64)
    return 0.5 * jnp.sum(r64 * r64)
