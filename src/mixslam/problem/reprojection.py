"""Reprojection residuals and analytic Jacobians of bundle adjustment: compiled (numba) kernels.

Same models, formulas, branches and depth guard as the numpy reference :mod:`mixslam.problem.camera` (read its
docstring for the maths and for the constants :data:`~mixslam.problem.camera.MIN_DEPTH` and
:data:`~mixslam.problem.camera.SMALL_ANGLE2`).

Precision
    ``dtype`` (float64 or float32) is the arithmetic, not just the output format: cameras, points, observations,
    intrinsics, sigma and every constant are converted to ``dtype`` before the kernels run, and the kernels use
    no Python float literals (constants arrive as a tuple of ``dtype`` scalars), so a float32 call compiles to a
    pure fp32 specialization (no float64 arithmetic in its code). Only :func:`cost` widens: it sums the squares
    of the ``dtype`` residuals in fp64.

Layout
    Residuals ``r`` (m,2), camera blocks ``A`` (m,2,pc) with pc = 9 (BAL, additive on [w, t, f, k1, k2]) or 6
    (pinhole, tangent (rho, phi) of :func:`mixslam.lie.se3.retract`), point blocks ``B`` (m,2,3); all of
    ``dtype``, C-contiguous, whitened (divided by sigma). Ready for :mod:`mixslam.kernels.products` with
    ``ia = cam_idx``, ``ib = pt_idx`` (set -1 for fixed variables there).

Depth counts
    Each call returns ``n_behind`` (observations with the point behind the camera: BAL ``P.z >= 0``, pinhole
    ``P.z <= 0``) and ``n_clamped`` (``|P.z| < min_depth``, depth replaced by ``±min_depth``).

The kernels are serial loops (no prange). For the BAL model the rotation and its right Jacobian are computed
once per camera (one sin/sqrt per camera, not per observation).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels.threads import OBSERVATION_ROWS, bounds, chunk_count, run_chunks
from .bundle import MODELS
from .camera import min_depth_for, small_angle2_for

__all__ = ["residuals", "linearize", "cost", "bundle_arrays"]


# ---------------------------------------------------------------------------------------------------------
# Compiled cores (constants C = (zero, half, one, two) in the evaluation dtype)
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _bal_rotations_nb(cameras, small2, C):
    """Per camera: R (row-major, 9) then Jr (row-major, 9) -> (nc, 18)."""
    zero, half, one, two = C
    nc = cameras.shape[0]
    out = np.empty((nc, 18), dtype=cameras.dtype)
    for c in range(nc):
        w0 = cameras[c, 0]
        w1 = cameras[c, 1]
        w2 = cameras[c, 2]
        th2 = w0 * w0 + w1 * w1 + w2 * w2
        if th2 <= small2:
            s = one
            cc = zero
            a = half
            b = zero
        else:
            th = np.sqrt(th2)
            sn = np.sin(th)
            h = np.sin(th * half) / th
            s = sn / th
            cc = two * h * h
            a = cc
            b = (th - sn) / (th * th * th)
        # K = [w]x, K² = w wᵀ - θ² I written without cancellation on the diagonal
        q00 = -(w1 * w1 + w2 * w2)
        q11 = -(w0 * w0 + w2 * w2)
        q22 = -(w0 * w0 + w1 * w1)
        q01 = w0 * w1
        q02 = w0 * w2
        q12 = w1 * w2
        # R = I + s K + c K²
        out[c, 0] = one + cc * q00
        out[c, 1] = -s * w2 + cc * q01
        out[c, 2] = s * w1 + cc * q02
        out[c, 3] = s * w2 + cc * q01
        out[c, 4] = one + cc * q11
        out[c, 5] = -s * w0 + cc * q12
        out[c, 6] = -s * w1 + cc * q02
        out[c, 7] = s * w0 + cc * q12
        out[c, 8] = one + cc * q22
        # Jr = I - a K + b K²
        out[c, 9] = one + b * q00
        out[c, 10] = a * w2 + b * q01
        out[c, 11] = -a * w1 + b * q02
        out[c, 12] = -a * w2 + b * q01
        out[c, 13] = one + b * q11
        out[c, 14] = a * w0 + b * q12
        out[c, 15] = a * w1 + b * q02
        out[c, 16] = -a * w0 + b * q12
        out[c, 17] = one + b * q22
    return out


@njit(cache=True, error_model="numpy", nogil=True)
def _bal_nb(cameras, RJ, points, cam_idx, pt_idx, obs, sigma, md, C, r, A, B, jac):
    """BAL residuals (and, if ``jac``, Jacobian blocks) into r, A, B. Returns (n_behind, n_clamped)."""
    zero, half, one, two = C
    inv_s = one / sigma
    m = obs.shape[0]
    n_behind = 0
    n_clamped = 0
    for e in range(m):
        c = cam_idx[e]
        j = pt_idx[e]
        X0 = points[j, 0]
        X1 = points[j, 1]
        X2 = points[j, 2]
        R00 = RJ[c, 0]
        R01 = RJ[c, 1]
        R02 = RJ[c, 2]
        R10 = RJ[c, 3]
        R11 = RJ[c, 4]
        R12 = RJ[c, 5]
        R20 = RJ[c, 6]
        R21 = RJ[c, 7]
        R22 = RJ[c, 8]
        P0 = R00 * X0 + R01 * X1 + R02 * X2 + cameras[c, 3]
        P1 = R10 * X0 + R11 * X1 + R12 * X2 + cameras[c, 4]
        z = R20 * X0 + R21 * X1 + R22 * X2 + cameras[c, 5]
        if z >= zero:
            n_behind += 1
        clamped = abs(z) < md
        if clamped:
            n_clamped += 1
            z = md if z > zero else -md
        f = cameras[c, 6]
        k1 = cameras[c, 7]
        k2 = cameras[c, 8]
        p0 = -P0 / z
        p1 = -P1 / z
        n2 = p0 * p0 + p1 * p1
        rd = one + k1 * n2 + k2 * n2 * n2
        fr = f * rd
        r[e, 0] = (fr * p0 - obs[e, 0]) / sigma
        r[e, 1] = (fr * p1 - obs[e, 1]) / sigma
        if jac:
            # dpred/dp = f (r I + g p pᵀ), g = 2 (k1 + 2 k2 |p|²); dp/dP = (-1/z) [[1, 0, p0], [0, 1, p1]]
            g = two * (k1 + two * k2 * n2)
            fg = f * g
            M00 = fr + fg * p0 * p0
            M01 = fg * p0 * p1
            M11 = fr + fg * p1 * p1
            iz = -inv_s / z
            J00 = M00 * iz
            J01 = M01 * iz
            J10 = M01 * iz
            J11 = M11 * iz
            if clamped:
                J02 = zero
                J12 = zero
            else:
                J02 = (M00 * p0 + M01 * p1) * iz
                J12 = (M01 * p0 + M11 * p1) * iz
            # JR = J R (= point block)
            a00 = J00 * R00 + J01 * R10 + J02 * R20
            a01 = J00 * R01 + J01 * R11 + J02 * R21
            a02 = J00 * R02 + J01 * R12 + J02 * R22
            a10 = J10 * R00 + J11 * R10 + J12 * R20
            a11 = J10 * R01 + J11 * R11 + J12 * R21
            a12 = J10 * R02 + J11 * R12 + J12 * R22
            B[e, 0, 0] = a00
            B[e, 0, 1] = a01
            B[e, 0, 2] = a02
            B[e, 1, 0] = a10
            B[e, 1, 1] = a11
            B[e, 1, 2] = a12
            # -(JR [X]x) Jr: row aᵀ[X]x = a × X, negated = X × a
            u0 = X1 * a02 - X2 * a01
            u1 = X2 * a00 - X0 * a02
            u2 = X0 * a01 - X1 * a00
            v0 = X1 * a12 - X2 * a11
            v1 = X2 * a10 - X0 * a12
            v2 = X0 * a11 - X1 * a10
            for k in range(3):
                A[e, 0, k] = u0 * RJ[c, 9 + k] + u1 * RJ[c, 12 + k] + u2 * RJ[c, 15 + k]
                A[e, 1, k] = v0 * RJ[c, 9 + k] + v1 * RJ[c, 12 + k] + v2 * RJ[c, 15 + k]
            A[e, 0, 3] = J00
            A[e, 0, 4] = J01
            A[e, 0, 5] = J02
            A[e, 1, 3] = J10
            A[e, 1, 4] = J11
            A[e, 1, 5] = J12
            A[e, 0, 6] = rd * p0 * inv_s
            A[e, 1, 6] = rd * p1 * inv_s
            fn2 = f * n2 * inv_s
            A[e, 0, 7] = fn2 * p0
            A[e, 1, 7] = fn2 * p1
            fn4 = fn2 * n2
            A[e, 0, 8] = fn4 * p0
            A[e, 1, 8] = fn4 * p1
    return n_behind, n_clamped


@njit(cache=True, error_model="numpy", nogil=True)
def _pinhole_nb(cameras, points, cam_idx, pt_idx, obs, K, sigma, md, C, r, A, B, jac):
    """Pinhole residuals (and, if ``jac``, Jacobian blocks) into r, A, B. Returns (n_behind, n_clamped)."""
    zero, half, one, two = C
    inv_s = one / sigma
    fx = K[0]
    fy = K[1]
    cx = K[2]
    cy = K[3]
    m = obs.shape[0]
    n_behind = 0
    n_clamped = 0
    for e in range(m):
        c = cam_idx[e]
        j = pt_idx[e]
        X0 = points[j, 0]
        X1 = points[j, 1]
        X2 = points[j, 2]
        R00 = cameras[c, 0]
        R01 = cameras[c, 1]
        R02 = cameras[c, 2]
        R10 = cameras[c, 3]
        R11 = cameras[c, 4]
        R12 = cameras[c, 5]
        R20 = cameras[c, 6]
        R21 = cameras[c, 7]
        R22 = cameras[c, 8]
        P0 = R00 * X0 + R01 * X1 + R02 * X2 + cameras[c, 9]
        P1 = R10 * X0 + R11 * X1 + R12 * X2 + cameras[c, 10]
        z = R20 * X0 + R21 * X1 + R22 * X2 + cameras[c, 11]
        if z <= zero:
            n_behind += 1
        clamped = abs(z) < md
        if clamped:
            n_clamped += 1
            z = -md if z < zero else md
        x = P0 / z
        y = P1 / z
        r[e, 0] = (fx * x + cx - obs[e, 0]) / sigma
        r[e, 1] = (fy * y + cy - obs[e, 1]) / sigma
        if jac:
            iz = inv_s / z
            J00 = fx * iz
            J11 = fy * iz
            if clamped:
                J02 = zero
                J12 = zero
            else:
                J02 = -J00 * x
                J12 = -J11 * y
            # JR = J R (point block and d/drho)
            a00 = J00 * R00 + J02 * R20
            a01 = J00 * R01 + J02 * R21
            a02 = J00 * R02 + J02 * R22
            a10 = J11 * R10 + J12 * R20
            a11 = J11 * R11 + J12 * R21
            a12 = J11 * R12 + J12 * R22
            B[e, 0, 0] = a00
            B[e, 0, 1] = a01
            B[e, 0, 2] = a02
            B[e, 1, 0] = a10
            B[e, 1, 1] = a11
            B[e, 1, 2] = a12
            A[e, 0, 0] = a00
            A[e, 0, 1] = a01
            A[e, 0, 2] = a02
            A[e, 1, 0] = a10
            A[e, 1, 1] = a11
            A[e, 1, 2] = a12
            # d/dphi = -(JR [X]x) = X × a per row
            A[e, 0, 3] = X1 * a02 - X2 * a01
            A[e, 0, 4] = X2 * a00 - X0 * a02
            A[e, 0, 5] = X0 * a01 - X1 * a00
            A[e, 1, 3] = X1 * a12 - X2 * a11
            A[e, 1, 4] = X2 * a10 - X0 * a12
            A[e, 1, 5] = X0 * a11 - X1 * a10
    return n_behind, n_clamped


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------
def _prepare(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype, min_depth):
    if model not in MODELS:
        raise ValueError(f"unknown camera model {model!r}; expected one of {sorted(MODELS)}")
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"reprojection kernels run in float64 or float32, not {dt}")
    nstore = MODELS[model][0]
    cameras = np.ascontiguousarray(cameras, dtype=dt)
    points = np.ascontiguousarray(points, dtype=dt)
    obs = np.ascontiguousarray(obs, dtype=dt)
    cam_idx = np.ascontiguousarray(cam_idx, dtype=np.int64)
    pt_idx = np.ascontiguousarray(pt_idx, dtype=np.int64)
    m = obs.shape[0]
    if cameras.ndim != 2 or cameras.shape[1] != nstore:
        raise ValueError(f"cameras must be (nc, {nstore}) for model {model!r}, got {cameras.shape}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (npts, 3), got {points.shape}")
    if obs.shape != (m, 2) or cam_idx.shape != (m,) or pt_idx.shape != (m,):
        raise ValueError(f"obs (m,2), cam_idx (m,), pt_idx (m,) disagree: {obs.shape}, {cam_idx.shape}, {pt_idx.shape}")
    if m:  # the kernels do not range-check; a bad index would read out of bounds
        for name, idx, n in (("camera", cam_idx, cameras.shape[0]), ("point", pt_idx, points.shape[0])):
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"{name} index out of range: [{lo}, {hi}] with {n} {name}s")
    if model == "pinhole":
        K = np.ascontiguousarray(intrinsics, dtype=dt)
        if K.shape != (4,):
            raise ValueError(f"pinhole intrinsics must be (fx, fy, cx, cy), got shape {K.shape}")
    else:
        K = np.zeros(4, dtype=dt)
    T = dt.type
    C = (T(0), T(0.5), T(1), T(2))
    md = T(min_depth_for(dt, min_depth))
    if not md > 0:
        raise ValueError(f"min_depth must be positive, got {min_depth}")
    return dt, cameras, points, cam_idx, pt_idx, obs, K, T(sigma), md, C


def _run(model, args, jac):
    dt, cameras, points, cam_idx, pt_idx, obs, K, sigma, md, C = args
    m = obs.shape[0]
    pc = MODELS[model][1]
    r = np.empty((m, 2), dtype=dt)
    if jac:
        A = np.empty((m, 2, pc), dtype=dt)
        B = np.empty((m, 2, 3), dtype=dt)
    else:  # unused by the kernel when jac is False
        A = np.empty((0, 2, pc), dtype=dt)
        B = np.empty((0, 2, 3), dtype=dt)
    if model == "bal":
        RJ = _bal_rotations_nb(cameras, dt.type(small_angle2_for(dt)), C)
    # observations are independent: chunks on up to two threads give the same bits as one pass
    ranges = bounds(m, chunk_count(m, OBSERVATION_ROWS))

    def chunk(c):
        e0, e1 = ranges[c]
        Ac, Bc = (A[e0:e1], B[e0:e1]) if jac else (A, B)
        if model == "bal":
            return _bal_nb(
                cameras, RJ, points, cam_idx[e0:e1], pt_idx[e0:e1], obs[e0:e1], sigma, md, C, r[e0:e1], Ac, Bc, jac
            )
        return _pinhole_nb(
            cameras, points, cam_idx[e0:e1], pt_idx[e0:e1], obs[e0:e1], K, sigma, md, C, r[e0:e1], Ac, Bc, jac
        )

    counts = run_chunks(chunk, len(ranges))
    return r, A, B, int(sum(c[0] for c in counts)), int(sum(c[1] for c in counts))


def residuals(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype=np.float64, min_depth=None):
    """Whitened residuals ``(pred - obs) / sigma``.

    ``model``: ``"bal"`` or ``"pinhole"``; ``cameras`` (nc, 9|12), ``points`` (npts, 3), ``cam_idx``/``pt_idx``
    (m,), ``obs`` (m, 2), ``intrinsics`` (fx, fy, cx, cy) (pinhole; ignored for BAL, may be None), ``sigma``
    (pixel noise). ``dtype``: float64 or float32, the arithmetic. ``min_depth``: depth clamp (default
    :data:`mixslam.problem.camera.MIN_DEPTH` of ``dtype``).

    Returns ``(r (m,2) of dtype, n_behind, n_clamped)``.
    """
    args = _prepare(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype, min_depth)
    r, _, _, nb, ncl = _run(model, args, False)
    return r, nb, ncl


def linearize(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype=np.float64, min_depth=None):
    """Residuals and Jacobian blocks (same arguments as :func:`residuals`).

    Returns ``(r (m,2), A (m,2,pc), B (m,2,3), n_behind, n_clamped)``, arrays of ``dtype``, C-contiguous;
    ``A`` = d r / d camera tangent (pc = 9 BAL additive, 6 pinhole (rho, phi)), ``B`` = d r / d point.
    """
    args = _prepare(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype, min_depth)
    return _run(model, args, True)


def cost(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype=np.float64, min_depth=None) -> float:
    """0.5 Σ r² of the ``dtype`` residuals, summed in fp64 (same arguments as :func:`residuals`)."""
    r, _, _ = residuals(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma, dtype, min_depth)
    r64 = r.astype(np.float64).ravel()
    return 0.5 * float(np.dot(r64, r64))


def bundle_arrays(data, cameras=None, points=None) -> tuple:
    """The positional arguments ``(model, cameras, points, cam_idx, pt_idx, obs, intrinsics, sigma)`` of
    :func:`residuals`/:func:`linearize`/:func:`cost` for a :class:`~mixslam.problem.bundle.BundleData`
    (optionally with another state), e.g. ``linearize(*bundle_arrays(data), dtype=np.float32)``."""
    return (
        data.model,
        data.cameras if cameras is None else cameras,
        data.points if points is None else points,
        data.cam_idx,
        data.pt_idx,
        data.observations,
        data.intrinsics,
        data.sigma,
    )
