"""Schur complement of bundle adjustment's normal equations (points eliminated), compiled, fp64 or fp32.

Layout as in :mod:`mixslam.kernels.products`: observation ``e`` has a camera block ``A[e]`` (2 x pc) on camera
``ia[e]`` and a point block ``B[e]`` (2 x 3) on point ``ib[e]`` (-1: fixed). With U_c = Σ AᵀA + D_c per camera,
V_j = Σ BᵀB + D_j = L_j L_jᵀ per point and W_e = A[e]ᵀB[e] (pc x 3), the symmetric form

    Z_e = W_e L_j⁻ᵀ   (pc x 3, stored transposed and padded: ``Z[e]`` is (3, width), zeros past pc)
    S   = U - Σ_j Σ_{e,f ∈ obs(j)} Z_e Z_fᵀ                      (dense, (nc pc)²)

needs one product per observation pair instead of two. A solve with the full matrix H = [[U, W], [Wᵀ, V]]
is then (:func:`schur_rhs`, a dense solve with S, :func:`schur_back`):

    t_j = L_j⁻¹ r_p[j];  S δc = r_c - Σ_e Z_e t_j;  δp_j = L_j⁻ᵀ (t_j - Σ_{e ∈ obs(j)} Z_eᵀ δc[ia[e]])

**Speed** (the reason for this layout): the reduction :func:`schur_reduce` walks the observation pairs
sorted by camera pair (:func:`camera_pairs`, once per problem), so each camera block of S is accumulated in a
small local array, and its innermost loop runs over the padded ``width`` (a compile-time constant: 16 for
BAL's 9-parameter cameras): one or two SIMD registers per row, in the dtype of ``Z`` (16 fp32 lanes or 8
fp64 lanes of AVX-512). Every kernel computes and accumulates in the dtype of its inputs; fp32 runs with
flush-to-zero (:mod:`.fpenv`). The previous scalar kernel spent 70 ms per LM step on problem-16-22106.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fp16 import load
from .fpenv import ftz_on, ftz_restore
from .simd import rank3_update
from .threads import OBSERVATION_ROWS, bounds, chunk_count, run_chunks


def padded_width(pc: int) -> int:
    """Row width of the stored Z blocks: pc rounded up to a multiple of 8 (one or two AVX-512 registers)."""
    return max(8, -(-pc // 8) * 8)


@njit(cache=True)
def camera_pairs(ia, ib, nc, npts):
    """Observation pairs of every point, sorted by camera pair (symbolic: once per problem).

    Returns (pe, pf, bptr, bkey): pairs ``(pe[t], pf[t])`` of observations of one point with cameras c1 <= c2
    (both orders for c1 == c2, so a diagonal block sums every ordered pair), block ``k`` of camera pair
    ``(bkey[k] // nc, bkey[k] % nc)`` spanning ``bptr[k]:bptr[k+1]``. Observations of fixed cameras or
    points take part in no pair.
    """
    m = ia.shape[0]
    counts = np.zeros(npts + 1, np.int64)
    for e in range(m):
        if ia[e] >= 0 and ib[e] >= 0:
            counts[ib[e] + 1] += 1
    for j in range(npts):
        counts[j + 1] += counts[j]
    ptr = counts.copy()
    obs = np.empty(ptr[npts], np.int64)
    fill = ptr[:npts].copy()
    for e in range(m):
        if ia[e] >= 0 and ib[e] >= 0:
            obs[fill[ib[e]]] = e
            fill[ib[e]] += 1
    npairs = 0
    for j in range(npts):
        k = ptr[j + 1] - ptr[j]
        npairs += k * k  # an upper bound: every ordered pair
    keys = np.empty(npairs, np.int64)
    pe = np.empty(npairs, np.int32)
    pf = np.empty(npairs, np.int32)
    n = 0
    for j in range(npts):
        for s in range(ptr[j], ptr[j + 1]):
            e = obs[s]
            for u in range(ptr[j], ptr[j + 1]):
                f = obs[u]
                if ia[e] < ia[f] or ia[e] == ia[f]:
                    keys[n] = ia[e] * nc + ia[f]
                    pe[n] = e
                    pf[n] = f
                    n += 1
    # counting sort by key (stable)
    nkeys = nc * nc
    kc = np.zeros(nkeys + 1, np.int64)
    for t in range(n):
        kc[keys[t] + 1] += 1
    for q in range(nkeys):
        kc[q + 1] += kc[q]
    pos = kc[:nkeys].copy()
    se = np.empty(n, np.int32)
    sf = np.empty(n, np.int32)
    for t in range(n):
        q = keys[t]
        se[pos[q]] = pe[t]
        sf[pos[q]] = pf[t]
        pos[q] += 1
    nblocks = 0
    for q in range(nkeys):
        if kc[q + 1] > kc[q]:
            nblocks += 1
    bptr = np.empty(nblocks + 1, np.int64)
    bkey = np.empty(nblocks, np.int64)
    k = 0
    for q in range(nkeys):
        if kc[q + 1] > kc[q]:
            bptr[k] = kc[q]
            bkey[k] = q
            k += 1
    bptr[nblocks] = n
    return se, sf, bptr, bkey


def schur_point_blocks(A, ia, B, ib, dc, dp, Z, PC, W, threads=None):
    """U (nc, pc, pc) = Σ AᵀA + diag(dc) per camera and Linv (npts, 3, 3) = L_j⁻¹ (lower triangular) per point,
    in the dtype of ``A``; writes Z[e] = L_j⁻¹ W_eᵀ (3 x width, zero padded; zero for an observation of a
    fixed camera or point). ``dc`` (nc, pc) / ``dp`` (npts, 3): the damping. ``PC``, ``W``: tuples of length
    pc and width (compile-time loop bounds). Returns (U, Linv, npd): npd counts points whose V_j was not
    positive definite (their Linv is zero: the point does not move).

    Runs in chunks of observations (and of points) on up to ``threads`` threads (:mod:`.threads`): each chunk
    accumulates its own U and V, added in chunk order; the chunk count depends on the size only, so the
    result does not depend on the thread count."""
    m = A.shape[0]
    nc, npts = dc.shape[0], dp.shape[0]
    pc = len(PC)
    chunks = chunk_count(m, OBSERVATION_ROWS)
    ranges = bounds(m, chunks)
    U = np.zeros((chunks, nc, pc, pc), A.dtype)
    V = np.zeros((chunks, npts, 3, 3), A.dtype)
    run_chunks(lambda c: _accumulate_uv(A, ia, B, ib, ranges[c][0], ranges[c][1], U[c], V[c], PC), chunks, threads)
    for c in range(1, chunks):  # in chunk order: the same sums on any number of threads
        U[0] += U[c]
        V[0] += V[c]
    U0, V0 = U[0], V[0]
    Linv = np.zeros((npts, 3, 3), A.dtype)
    pranges = bounds(npts, chunks)
    npd = run_chunks(lambda c: _point_inverses(V0, dp, pranges[c][0], pranges[c][1], Linv), chunks, threads)
    run_chunks(lambda c: _z_blocks(A, ia, B, ib, Linv, ranges[c][0], ranges[c][1], Z, PC, W), chunks, threads)
    _add_damping(U0, dc)
    return U0, Linv, int(sum(npd))


@njit(cache=True, fastmath=True, nogil=True)
def _accumulate_uv(A, ia, B, ib, e0, e1, U, V, PC):
    """U[c] += A[e]ᵀA[e], V[j] += B[e]ᵀB[e] over observations e0 .. e1-1 (flush-to-zero in this thread)."""
    old = ftz_on()
    pc = len(PC)
    for e in range(e0, e1):
        c = ia[e]
        j = ib[e]
        if c >= 0:
            for a in range(pc):
                a0 = A[e, 0, a]
                a1 = A[e, 1, a]
                for b in range(pc):
                    U[c, a, b] += a0 * A[e, 0, b] + a1 * A[e, 1, b]
        if j >= 0:
            for a in range(3):
                b0 = B[e, 0, a]
                b1 = B[e, 1, a]
                for b in range(3):
                    V[j, a, b] += b0 * B[e, 0, b] + b1 * B[e, 1, b]
    ftz_restore(old)


@njit(cache=True, nogil=True)
def _add_damping(U, dc):
    for c in range(U.shape[0]):
        for a in range(U.shape[1]):
            U[c, a, a] += dc[c, a]


@njit(cache=True, fastmath=True, nogil=True)
def _point_inverses(V, dp, j0, j1, Linv):
    """Linv[j] = L_j⁻¹ of V_j + diag(dp[j]) for points j0 .. j1-1 (zero when not positive definite); returns
    how many were not."""
    old = ftz_on()
    npd = 0
    for j in range(j0, j1):
        for a in range(3):
            V[j, a, a] += dp[j, a]
        if not _inv_chol3(V[j], Linv[j]):
            npd += 1
            Linv[j, :, :] = 0
    ftz_restore(old)
    return npd


@njit(cache=True, fastmath=True, nogil=True)
def _z_blocks(A, ia, B, ib, Linv, e0, e1, Z, PC, W):
    """Z[e] = L_j⁻¹ W_eᵀ (3 x width, zero padded) for observations e0 .. e1-1."""
    old = ftz_on()
    pc = len(PC)
    for e in range(e0, e1):
        c = ia[e]
        j = ib[e]
        if c < 0 or j < 0:
            Z[e, :, :] = 0
            continue
        # WT[q, a] = Σ_r B[e, r, q] A[e, r, a]; Z[e] = Linv[j] @ WT  (lower triangular Linv)
        for q in range(3):
            for a in range(len(W)):
                Z[e, q, a] = 0
        for q in range(3):
            for s in range(q + 1):
                lqs = Linv[j, q, s]
                b0 = lqs * B[e, 0, s]
                b1 = lqs * B[e, 1, s]
                for a in range(pc):
                    Z[e, q, a] += b0 * A[e, 0, a] + b1 * A[e, 1, a]
    ftz_restore(old)


@njit(cache=True, fastmath=True)
def _inv_chol3(M, out):
    """out = L⁻¹ (lower triangular) with M = L Lᵀ for a 3x3 symmetric matrix; False if M is not positive
    definite (or not finite)."""
    d0 = M[0, 0]
    if not d0 > 0:
        return False
    l00 = np.sqrt(d0)
    l10 = M[1, 0] / l00
    l20 = M[2, 0] / l00
    d1 = M[1, 1] - l10 * l10
    if not d1 > 0:
        return False
    l11 = np.sqrt(d1)
    l21 = (M[2, 1] - l20 * l10) / l11
    d2 = M[2, 2] - l20 * l20 - l21 * l21
    if not d2 > 0:
        return False
    l22 = np.sqrt(d2)
    n00 = 1 / l00
    n11 = 1 / l11
    n22 = 1 / l22
    out[0, 0] = n00
    out[1, 1] = n11
    out[2, 2] = n22
    out[1, 0] = -l10 * n00 * n11
    out[2, 1] = -l21 * n11 * n22
    out[2, 0] = -(l20 * n00 + l21 * out[1, 0]) * n22
    out[0, 1] = 0
    out[0, 2] = 0
    out[1, 2] = 0
    return True


def schur_reduce(U, Z, pe, pf, bptr, bkey, PC, W, threads=None):
    """The dense reduced camera system S = U - Σ Z_e Z_fᵀ (nc pc, nc pc) in the dtype of ``Z``, from the
    pairs of :func:`camera_pairs`. ``PC``, ``W``: tuples of length pc and width (compile-time bounds). The
    camera-pair blocks are split into chunks of about equal pair counts, run on up to ``threads`` threads:
    each block of S is written by one chunk, so the result does not depend on the chunking at all."""
    nc = U.shape[0]
    pc = len(PC)
    S = np.zeros((nc * pc, nc * pc), Z.dtype)
    _load_diagonal(U, S)
    npairs = int(bptr[-1]) if bptr.size else 0
    chunks = chunk_count(npairs)
    # block boundaries with about equal pairs per chunk
    cuts = np.searchsorted(bptr, [npairs * c // chunks for c in range(chunks + 1)], side="left")
    cuts[0], cuts[-1] = 0, bkey.shape[0]
    run_chunks(
        lambda c: _reduce_blocks(Z, pe, pf, bptr, bkey, int(cuts[c]), int(cuts[c + 1]), nc, S, PC, W), chunks, threads
    )
    _mirror_blocks(S, nc, pc)
    return S


@njit(cache=True, nogil=True)
def _load_diagonal(U, S):
    pc = U.shape[1]
    for c in range(U.shape[0]):
        for a in range(pc):
            for d in range(pc):
                S[c * pc + a, c * pc + d] = U[c, a, d]


@njit(cache=True, fastmath=True, nogil=True)
def _reduce_blocks(Z, pe, pf, bptr, bkey, k0, k1, nc, S, PC, W):
    """S -= Σ Z_e Z_fᵀ over the camera-pair blocks k0 .. k1-1 (block rows c1 <= c2 only: a chunk writes only
    the block rows of its own pairs' first cameras, so two chunks share no cache line but at their boundary;
    :func:`_mirror_blocks` fills the blocks below afterwards)."""
    old = ftz_on()
    pc = len(PC)
    w = len(W)
    acc = np.empty((pc, w), Z.dtype)
    for k in range(k0, k1):
        c1 = bkey[k] // nc
        c2 = bkey[k] % nc
        acc[:, :] = 0
        for t in range(bptr[k], bptr[k + 1]):
            rank3_update(acc, Z, pe[t], pf[t], PC, W)
        r0 = c1 * pc
        q0 = c2 * pc
        for a in range(pc):
            for d in range(pc):
                S[r0 + a, q0 + d] -= acc[a, d]
    ftz_restore(old)


@njit(cache=True, nogil=True)
def _mirror_blocks(S, nc, pc):
    """The blocks below the diagonal as the transposes of those above (exact copies)."""
    for c1 in range(nc):
        for c2 in range(c1 + 1, nc):
            for a in range(pc):
                for d in range(pc):
                    S[c2 * pc + d, c1 * pc + a] = S[c1 * pc + a, c2 * pc + d]


def schur_rhs(Z, Linv, ia, ib, rc, rp, bc, t, threads=None):
    """bc (nc, pc) = rc - Σ_e Z_e t[ib[e]] with t (npts, 3) = L_j⁻¹ rp[j] (both written; dtype of ``bc``).
    In observation chunks on up to ``threads`` threads, each summing its own Σ_e Z_e t_j, subtracted from rc
    in chunk order (the chunk count depends on the size only: the same bits on any number of threads)."""
    m = Z.shape[0]
    chunks = chunk_count(m, OBSERVATION_ROWS)
    ranges, pranges = bounds(m, chunks), bounds(rp.shape[0], chunks)
    run_chunks(lambda c: _point_solves(Linv, rp, pranges[c][0], pranges[c][1], t), chunks, threads)
    part = np.zeros((chunks, *bc.shape), bc.dtype)
    run_chunks(lambda c: _rhs_sums(Z, ia, ib, t, ranges[c][0], ranges[c][1], part[c]), chunks, threads)
    bc[:, :] = rc
    for c in range(chunks):
        bc -= part[c]


@njit(cache=True, fastmath=True, nogil=True)
def _point_solves(Linv, rp, j0, j1, t):
    """t[j] = L_j⁻¹ rp[j] for points j0 .. j1-1."""
    old = ftz_on()
    for j in range(j0, j1):
        for q in range(3):
            s = Linv[j, q, 0] * rp[j, 0]
            for u in range(1, q + 1):
                s += Linv[j, q, u] * rp[j, u]
            t[j, q] = s
    ftz_restore(old)


@njit(cache=True, fastmath=True, nogil=True)
def _rhs_sums(Z, ia, ib, t, e0, e1, out):
    """out[c] += Z_e t[ib[e]] over observations e0 .. e1-1."""
    old = ftz_on()
    pc = out.shape[1]
    for e in range(e0, e1):
        c = ia[e]
        j = ib[e]
        if c < 0 or j < 0:
            continue
        t0 = t[j, 0]
        t1 = t[j, 1]
        t2 = t[j, 2]
        for a in range(pc):
            out[c, a] += Z[e, 0, a] * t0 + Z[e, 1, a] * t1 + Z[e, 2, a] * t2
    ftz_restore(old)


def schur_back(Z, Linv, ia, ib, t, dc, dp, threads=None):
    """dp (npts, 3) = L_j⁻ᵀ (t_j - Σ_{e ∈ obs(j)} Z_eᵀ dc[ia[e]]) (written; dtype of ``dp``). ``t`` is
    overwritten. In observation chunks as :func:`schur_rhs` (partial sums per point, subtracted in chunk
    order), then by chunks of points."""
    m = Z.shape[0]
    chunks = chunk_count(m, OBSERVATION_ROWS)
    ranges, pranges = bounds(m, chunks), bounds(dp.shape[0], chunks)
    part = np.zeros((chunks, *t.shape), t.dtype)
    run_chunks(lambda c: _back_sums(Z, ia, ib, dc, ranges[c][0], ranges[c][1], part[c]), chunks, threads)
    for c in range(chunks):
        t -= part[c]
    run_chunks(lambda c: _point_back(Linv, t, pranges[c][0], pranges[c][1], dp), chunks, threads)


@njit(cache=True, fastmath=True, nogil=True)
def _back_sums(Z, ia, ib, dc, e0, e1, out):
    """out[j] += Z_eᵀ dc[ia[e]] over observations e0 .. e1-1."""
    old = ftz_on()
    pc = dc.shape[1]
    for e in range(e0, e1):
        c = ia[e]
        j = ib[e]
        if c < 0 or j < 0:
            continue
        for q in range(3):
            s = Z[e, q, 0] * dc[c, 0]
            for a in range(1, pc):
                s += Z[e, q, a] * dc[c, a]
            out[j, q] += s
    ftz_restore(old)


@njit(cache=True, fastmath=True, nogil=True)
def _point_back(Linv, t, j0, j1, dp):
    """dp[j] = L_j⁻ᵀ t[j] for points j0 .. j1-1."""
    old = ftz_on()
    for j in range(j0, j1):
        for q in range(3):
            s = Linv[j, q, q] * t[j, q]
            for u in range(q + 1, 3):
                s += Linv[j, u, q] * t[j, u]
            dp[j, q] = s
    ftz_restore(old)


def warm(pc: int, dtype) -> None:
    """Compile (or load from numba's cache) every kernel above for cameras of ``pc`` parameters in ``dtype``
    (float64 or float32), on a two-camera, two-point problem."""
    from .products import static_size

    dt = np.dtype(dtype)
    w = padded_width(pc)
    ia = np.array([-1, 0, 1, 0], np.int64)
    ib = np.array([0, 0, 1, 1], np.int64)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 2, pc)).astype(dt)
    B = rng.standard_normal((4, 2, 3)).astype(dt)
    pe, pf, bptr, bkey = camera_pairs(ia, ib, 2, 2)
    Z = np.empty((4, 3, w), dt)
    U, Linv, _ = schur_point_blocks(
        A, ia, B, ib, np.ones((2, pc), dt), np.ones((2, 3), dt), Z, static_size(pc), static_size(w)
    )
    schur_reduce(U, Z, pe, pf, bptr, bkey, static_size(pc), static_size(w))
    bc, t, dp = np.empty((2, pc), dt), np.empty((2, 3), dt), np.empty((2, 3), dt)
    schur_rhs(Z, Linv, ia, ib, np.ones((2, pc), dt), np.ones((2, 3), dt), bc, t)
    schur_back(Z, Linv, ia, ib, t, bc, dp)


# ---------------------------------------------------------------------------------------------------------
# Implicit Schur complement (iterative Schur): products with S = U - W V⁻¹ Wᵀ without forming it
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=True)
def implicit_point_blocks(A, ia, B, ib, dc, dp, Linv, M):
    """Linv (npts, 3, 3) = L_j⁻¹ of V_j = Σ BᵀB + diag(dp) = L_j L_jᵀ, and, when ``M`` (nc, pc, pc) has rows,
    the Schur-Jacobi blocks M_c = U_c - Σ_{e ∈ obs(c)} W_e V_j⁻¹ W_eᵀ (U_c = Σ AᵀA + diag(dc)), in the dtype of
    ``Linv`` / ``M``. ``A`` / ``B`` in any storage (fp16 as uint16 bits, widened by :func:`load`). Returns the
    count of points whose V_j is not positive definite (their Linv is zero: they do not move)."""
    old = ftz_on()
    m = A.shape[0]
    pc = A.shape[2]
    npts = dp.shape[0]
    V = np.zeros((npts, 3, 3), Linv.dtype)
    for e in range(m):
        j = ib[e]
        if j < 0:
            continue
        for a in range(3):
            b0 = load(B, (e, 0, a))
            b1 = load(B, (e, 1, a))
            for b in range(3):
                V[j, a, b] += b0 * load(B, (e, 0, b)) + b1 * load(B, (e, 1, b))
    npd = 0
    for j in range(npts):
        for a in range(3):
            V[j, a, a] += dp[j, a]
        if not _inv_chol3(V[j], Linv[j]):
            npd += 1
            Linv[j, :, :] = 0
    if M.shape[0] > 0:
        M[:, :, :] = 0
        for c in range(dc.shape[0]):
            for a in range(pc):
                M[c, a, a] = dc[c, a]
        z = np.empty((3, pc), Linv.dtype)
        for e in range(m):
            c = ia[e]
            if c < 0:
                continue
            for a in range(pc):
                a0 = load(A, (e, 0, a))
                a1 = load(A, (e, 1, a))
                for b in range(pc):
                    M[c, a, b] += a0 * load(A, (e, 0, b)) + a1 * load(A, (e, 1, b))
            j = ib[e]
            if j < 0:
                continue
            # z = L_j⁻¹ W_eᵀ (3 x pc); M_c -= zᵀ z
            for q in range(3):
                for a in range(pc):
                    s = Linv[j, q, 0] * (
                        load(B, (e, 0, 0)) * load(A, (e, 0, a)) + load(B, (e, 1, 0)) * load(A, (e, 1, a))
                    )
                    for u in range(1, q + 1):
                        s += Linv[j, q, u] * (
                            load(B, (e, 0, u)) * load(A, (e, 0, a)) + load(B, (e, 1, u)) * load(A, (e, 1, a))
                        )
                    z[q, a] = s
            for a in range(pc):
                for b in range(pc):
                    M[c, a, b] -= z[0, a] * z[0, b] + z[1, a] * z[1, b] + z[2, a] * z[2, b]
    ftz_restore(old)
    return npd


@njit(cache=True)
def _vinv_apply(Linv, j, t0, t1, t2, out):
    """out = V_j⁻¹ (t0, t1, t2) = L⁻ᵀ L⁻¹ t."""
    s0 = Linv[j, 0, 0] * t0
    s1 = Linv[j, 1, 0] * t0 + Linv[j, 1, 1] * t1
    s2 = Linv[j, 2, 0] * t0 + Linv[j, 2, 1] * t1 + Linv[j, 2, 2] * t2
    out[0] = Linv[j, 0, 0] * s0 + Linv[j, 1, 0] * s1 + Linv[j, 2, 0] * s2
    out[1] = Linv[j, 1, 1] * s1 + Linv[j, 2, 1] * s2
    out[2] = Linv[j, 2, 2] * s2


@njit(cache=True, fastmath=True, inline="always")
def _camera_rows(A, e, x, c, pc):
    """(A[e] x[c]) for the 2-row camera block of observation ``e`` (any storage)."""
    y0 = load(A, (e, 0, 0)) * x[c, 0]
    y1 = load(A, (e, 1, 0)) * x[c, 0]
    for a in range(1, pc):
        y0 += load(A, (e, 0, a)) * x[c, a]
        y1 += load(A, (e, 1, a)) * x[c, a]
    return y0, y1


@njit(cache=True, fastmath=True)
def implicit_schur_matvec(A, ia, B, ib, Linv, dc, x, out, y, t):
    """out (nc, pc) = (AᵀA + diag(dc)) x - AᵀB V⁻¹ BᵀA x, in the dtype of ``out`` (``y`` (m, 2) and ``t``
    (npts, 3) are work arrays of that dtype; ``A`` / ``B`` in any storage)."""
    old = ftz_on()
    m = A.shape[0]
    pc = A.shape[2]
    t[:, :] = 0
    for e in range(m):
        c = ia[e]
        if c < 0:
            y[e, 0] = 0
            y[e, 1] = 0
            continue
        y0, y1 = _camera_rows(A, e, x, c, pc)
        y[e, 0] = y0
        y[e, 1] = y1
        j = ib[e]
        if j >= 0:
            for q in range(3):
                t[j, q] += load(B, (e, 0, q)) * y0 + load(B, (e, 1, q)) * y1
    s = np.empty(3, t.dtype)
    for j in range(t.shape[0]):
        _vinv_apply(Linv, j, t[j, 0], t[j, 1], t[j, 2], s)
        t[j, 0] = s[0]
        t[j, 1] = s[1]
        t[j, 2] = s[2]
    for c in range(out.shape[0]):
        for a in range(pc):
            out[c, a] = dc[c, a] * x[c, a]
    for e in range(m):
        c = ia[e]
        if c < 0:
            continue
        z0 = y[e, 0]
        z1 = y[e, 1]
        j = ib[e]
        if j >= 0:
            for q in range(3):
                z0 -= load(B, (e, 0, q)) * t[j, q]
                z1 -= load(B, (e, 1, q)) * t[j, q]
        for a in range(pc):
            out[c, a] += load(A, (e, 0, a)) * z0 + load(A, (e, 1, a)) * z1
    ftz_restore(old)


@njit(cache=True, fastmath=True)
def implicit_rhs(A, ia, B, ib, Linv, rc, rp, bc, t):
    """bc (nc, pc) = rc - W V⁻¹ rp and t (npts, 3) = V⁻¹ rp (dtype of ``bc``)."""
    pc = A.shape[2]
    s = np.empty(3, t.dtype)
    for j in range(rp.shape[0]):
        _vinv_apply(Linv, j, rp[j, 0], rp[j, 1], rp[j, 2], s)
        t[j, 0] = s[0]
        t[j, 1] = s[1]
        t[j, 2] = s[2]
    bc[:, :] = rc
    for e in range(A.shape[0]):
        c = ia[e]
        j = ib[e]
        if c < 0 or j < 0:
            continue
        u0 = load(B, (e, 0, 0)) * t[j, 0] + load(B, (e, 0, 1)) * t[j, 1] + load(B, (e, 0, 2)) * t[j, 2]
        u1 = load(B, (e, 1, 0)) * t[j, 0] + load(B, (e, 1, 1)) * t[j, 1] + load(B, (e, 1, 2)) * t[j, 2]
        for a in range(pc):
            bc[c, a] -= load(A, (e, 0, a)) * u0 + load(A, (e, 1, a)) * u1


@njit(cache=True, fastmath=True)
def implicit_back(A, ia, B, ib, Linv, rp, xc, xp, t):
    """xp (npts, 3) = V⁻¹ (rp - Wᵀ xc) (dtype of ``xp``; ``t`` (npts, 3) is a work array)."""
    pc = A.shape[2]
    t[:, :] = rp
    for e in range(A.shape[0]):
        c = ia[e]
        j = ib[e]
        if c < 0 or j < 0:
            continue
        y0, y1 = _camera_rows(A, e, xc, c, pc)
        for q in range(3):
            t[j, q] -= load(B, (e, 0, q)) * y0 + load(B, (e, 1, q)) * y1
    s = np.empty(3, t.dtype)
    for j in range(xp.shape[0]):
        _vinv_apply(Linv, j, t[j, 0], t[j, 1], t[j, 2], s)
        xp[j, 0] = s[0]
        xp[j, 1] = s[1]
        xp[j, 2] = s[2]


def warm_implicit(pc: int, storage, dtype) -> None:
    """Compile the implicit Schur kernels for blocks stored as ``storage`` (float64, float32, or float16 passed
    as uint16 bits) with products in ``dtype``, on a two-camera, two-point problem."""
    st, dt = np.dtype(storage), np.dtype(dtype)
    ia = np.array([-1, 0, 1, 0], np.int64)
    ib = np.array([0, 0, 1, 1], np.int64)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 2, pc))
    B = rng.standard_normal((4, 2, 3))
    if st == np.float16:
        A, B = A.astype(np.float16).view(np.uint16), B.astype(np.float16).view(np.uint16)
    else:
        A, B = A.astype(st), B.astype(st)
    Linv, M = np.empty((2, 3, 3), dt), np.empty((2, pc, pc), dt)
    dc, dp = np.ones((2, pc), dt), np.ones((2, 3), dt)
    implicit_point_blocks(A, ia, B, ib, dc, dp, Linv, M)
    x, out = np.ones((2, pc), dt), np.empty((2, pc), dt)
    implicit_schur_matvec(A, ia, B, ib, Linv, dc, x, out, np.empty((4, 2), dt), np.empty((2, 3), dt))
    if st == dt:
        t = np.empty((2, 3), dt)
        implicit_rhs(A, ia, B, ib, Linv, x, dp, out, t)
        implicit_back(A, ia, B, ib, Linv, dp, x, np.empty((2, 3), dt), t)
