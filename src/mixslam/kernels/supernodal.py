"""Compiled kernels of the supernodal sparse Cholesky (:mod:`mixslam.linear.supernodal`).

Symbolic part (on the compressed graph: one node per block of identical columns, e.g. per pose)
    :func:`etree` (Liu's algorithm with path compression), :func:`postorder`, :func:`column_counts` (row
    subtrees: O(nnz(L)) without storing L's pattern), :func:`supernodes` (fundamental supernodes, then
    CHOLMOD-style relaxed amalgamation along the etree) and :func:`last_column_structure` (the rows of each
    supernode below its columns).

Numeric part (scalar columns)
    The factor is a list of dense column-major panels, one per supernode: ``k x m`` (row-major storage of
    the transpose) for a supernode of ``k`` columns whose row structure (its own columns first, then the
    rows below, ascending) has ``m`` entries. fp32 factors run with flush-to-zero (:mod:`.fpenv`).
    :func:`factor` is the classic left-looking supernodal Cholesky (Ng & Peyton; CHOLMOD's ``super_numeric``):
    each target supernode gathers the updates of the descendants that touch it (linked lists keyed by the
    next target, so each descendant is visited once per target), then runs a dense Cholesky of its panel.
    Updates and the dense factor run in the dtype of the panels (fp64 or fp32, fp32 accumulating in fp32
    like ``sgemm``): compiled loops for small blocks, BLAS ``gemm`` through ``np.dot`` for large ones.
    :func:`solve` does the two triangular solves reading the panels in their own dtype and accumulating in
    the dtype of the vector (fp64 for iterative refinement).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fp16 import FP16_TINY, f2h, h2f, rounding_outcome, widen
from .fpenv import ftz_on, ftz_restore
from .threads import run_chunks

__all__ = [
    "full_pattern",
    "compress",
    "relabel",
    "panel_positions",
    "etree",
    "postorder",
    "column_counts",
    "supernodes",
    "last_column_structure",
    "factor",
    "solve",
    "supernode_parents",
    "lane_split",
    "LANE_MIN_ENTRIES",
    "LANE_MAX_TIME",
    "BLAS_MIN_FLOPS",
    "warm",
]

#: Update / panel sizes (multiply-adds) from which the numeric kernels call BLAS instead of their own loops
#: (measured with benchmarks/direct_solvers.py: below it the call overhead dominates).
BLAS_MIN_FLOPS = 32768

#: vectorize the dot products; keeps NaN/inf semantics for the pivot test
_FM = {"reassoc", "contract", "nsz"}
_NB = 64  # column block of the BLAS panel factorization

#: Panel entries from which :func:`lane_split` splits the triangular solves into two lanes for two threads.
#: Measured (benchmarks/threads.py, two threads against one, best of interleaved rounds, several runs): a
#: 200,000-pose grid (59M entries, METIS) 1.37-1.68x in fp32 and 1.60-1.87x with fp16 panels, city10000
#: (1.5M) 1.15-1.44x; below a million entries (ais2klinik 0.86M with small supernodes 1.04x, parking-garage
#: 0.5M 0.90x) the threads' start-up and the small panels' loop overheads eat the gain.
LANE_MIN_ENTRIES = 1 << 20
#: Decision: the numeric factorization is not split into lanes. Tried (each lane with its own row map and
#: update lists, joined before the top; BLAS on two threads): city10000 1.2x in fp64 and 1.15x in fp32,
#: sphere2500, parking-garage and a 200,000-pose grid 0.9-1.05x (interleaved runs, best of 25): gains within
#: this machine's run-to-run spread where there were any. (In a solve the driver limits BLAS to one thread,
#: ``solve.driver.single_threaded_blas``; measured, that costs the factorization 1.17-1.22x on a
#: 15,000-pose 3-D grid and nothing on city10000 or torus3D.)

#: The lanes must bring the solve's estimated time (entries before + max(lanes) + top, over all entries)
#: down to this fraction: sphere2500's best split (0.71) measured 0.81-1.28x over three runs and torus3D's
#: (0.79: a large dense top) 1.04x, not worth a thread; city10000 (0.58) and the grid (0.64) pay.
LANE_MAX_TIME = 0.65


@njit(cache=True)
def full_pattern(n, indptr, indices):
    """The full symmetric pattern (CSC, rows sorted) of the lower CSC pattern (rows sorted, diagonal present),
    in O(nnz): column c gets its upper entries (from the lower entries of the columns before it, appended in
    column order, hence sorted) before its own lower entries."""
    cnt = np.zeros(n + 1, np.int64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            cnt[j + 1] += 1
            if i != j:
                cnt[i + 1] += 1
    for j in range(n):
        cnt[j + 1] += cnt[j]
    fidx = np.empty(cnt[n], np.int64)
    nxt = cnt[:-1].copy()
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            fidx[nxt[j]] = i
            nxt[j] += 1
            if i != j:
                fidx[nxt[i]] = j
                nxt[i] += 1
    return cnt, fidx


@njit(cache=True)
def compress(n, fptr, fidx):
    """Runs of consecutive columns with identical full patterns, and the graph between them.

    Returns ``(starts, sizes, gptr, gidx, group)``: node g covers columns ``starts[g] ..`` (``sizes[g]`` of
    them), ``(gptr, gidx)`` its adjacency (CSC, sorted, no diagonal), ``group[c]`` the node of column c."""
    group = np.empty(n, np.int64)
    ng = 0
    for c in range(n):
        same = c > 0 and fptr[c + 1] - fptr[c] == fptr[c] - fptr[c - 1]
        if same:
            a, b = fptr[c], fptr[c - 1]
            for k in range(fptr[c + 1] - fptr[c]):
                if fidx[a + k] != fidx[b + k]:
                    same = False
                    break
        if not same:
            ng += 1
        group[c] = ng - 1
    starts = np.empty(ng, np.int64)
    sizes = np.zeros(ng, np.int64)
    for c in range(n - 1, -1, -1):
        starts[group[c]] = c
        sizes[group[c]] += 1
    gptr = np.zeros(ng + 1, np.int64)
    for g in range(ng):  # rows sorted -> groups sorted: duplicates are consecutive
        c = starts[g]
        last = -1
        for p in range(fptr[c], fptr[c + 1]):
            h = group[fidx[p]]
            if h != g and h != last:
                gptr[g + 1] += 1
                last = h
    for g in range(ng):
        gptr[g + 1] += gptr[g]
    gidx = np.empty(gptr[ng], np.int64)
    for g in range(ng):
        c = starts[g]
        last = -1
        q = gptr[g]
        for p in range(fptr[c], fptr[c + 1]):
            h = group[fidx[p]]
            if h != g and h != last:
                gidx[q] = h
                q += 1
                last = h
    return starts, sizes, gptr, gidx, group


@njit(cache=True)
def relabel(ptr, idx, pos):
    """The graph (CSC adjacency) with node i renamed pos[i] (rows within a column unsorted)."""
    n = ptr.size - 1
    nptr = np.zeros(n + 1, np.int64)
    for j in range(n):
        nptr[pos[j] + 1] = ptr[j + 1] - ptr[j]
    for j in range(n):
        nptr[j + 1] += nptr[j]
    nidx = np.empty(ptr[n], np.int64)
    for j in range(n):
        q = nptr[pos[j]]
        for p in range(ptr[j], ptr[j + 1]):
            nidx[q] = pos[idx[p]]
            q += 1
    return nptr, nidx


@njit(cache=True)
def panel_positions(indptr, indices, iperm, col2super, sptr, srows, scol0, poff, Map):
    """For every entry of the lower CSC pattern, its position in the flat panel array: the entry (r, c)
    goes to permuted (R, C) = (max, min)(iperm[r], iperm[c]), supernode t of C, local row of R in t."""
    n = indptr.size - 1
    nnz = indptr[n]
    nsuper = sptr.size - 1
    # entries grouped by supernode (counting sort), so Map is filled once per supernode
    cnt = np.zeros(nsuper + 1, np.int64)
    R = np.empty(nnz, np.int64)
    C = np.empty(nnz, np.int64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            a, b = iperm[indices[p]], iperm[j]
            R[p] = max(a, b)
            C[p] = min(a, b)
            cnt[col2super[C[p]] + 1] += 1
    for t in range(nsuper):
        cnt[t + 1] += cnt[t]
    order = np.empty(nnz, np.int64)
    nxt = cnt[:-1].copy()
    for p in range(nnz):
        t = col2super[C[p]]
        order[nxt[t]] = p
        nxt[t] += 1
    dst = np.empty(nnz, np.int64)
    for t in range(nsuper):
        m = sptr[t + 1] - sptr[t]
        for i in range(m):
            Map[srows[sptr[t] + i]] = i
        for q in range(cnt[t], cnt[t + 1]):
            p = order[q]
            dst[p] = poff[t] + (C[p] - scol0[t]) * m + Map[R[p]]
    return dst


@njit(cache=True)
def etree(n, ptr, idx):
    """Elimination tree of the symmetric pattern (both triangles, any order within a column):
    ``parent[j]`` or -1 for a root."""
    parent = np.full(n, -1, np.int64)
    anc = np.full(n, -1, np.int64)
    for k in range(n):
        for p in range(ptr[k], ptr[k + 1]):
            i = idx[p]
            while i != -1 and i < k:
                nxt = anc[i]
                anc[i] = k
                if nxt == -1:
                    parent[i] = k
                i = nxt
    return parent


@njit(cache=True)
def postorder(parent):
    """``post[k]`` = the node at position k of a depth-first postorder (children in ascending order)."""
    n = parent.size
    head = np.full(n, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    for j in range(n - 1, -1, -1):
        p = parent[j]
        if p != -1:
            nxt[j] = head[p]
            head[p] = j
    post = np.empty(n, np.int64)
    stack = np.empty(n, np.int64)
    k = 0
    for j in range(n):
        if parent[j] != -1:
            continue
        top = 0
        stack[0] = j
        while top >= 0:
            p = stack[top]
            i = head[p]
            if i == -1:
                top -= 1
                post[k] = p
                k += 1
            else:
                head[p] = nxt[i]
                top += 1
                stack[top] = i
    return post


@njit(cache=True)
def column_counts(n, ptr, idx, parent, size):
    """Number of block rows (``count``) and of scalar rows (``scount``) of each block column of L, diagonal
    included. ``size[j]`` is the width of block j. Row k of L is the union of the etree paths from each
    i < k adjacent to k up to k (its row subtree)."""
    mark = np.full(n, -1, np.int64)
    count = np.ones(n, np.int64)
    scount = size.astype(np.int64).copy()
    for k in range(n):
        mark[k] = k
        for p in range(ptr[k], ptr[k + 1]):
            i = idx[p]
            if i >= k:
                continue
            while mark[i] != k:
                count[i] += 1
                scount[i] += size[k]
                mark[i] = k
                i = parent[i]
    return count, scount


@njit(cache=True)
def supernodes(parent, count, scount, size, nrelax0, nrelax1, nrelax2, zrelax0, zrelax1, zrelax2):
    """First block column of each supernode (plus n at the end).

    Fundamental supernodes first: j + 1 joins j when it is j's parent and their structures agree
    (``count[j] == count[j + 1] + 1``), which adds no zero. Then relaxed amalgamation, as CHOLMOD does it: a
    supernode absorbs the supernode just before it when that one is its child in the etree and the merged
    panel (k scalar columns) keeps few explicit zeros: always when k <= nrelax0, when k <= nrelax1 and the
    fraction of zeros is below zrelax0, k <= nrelax2 and below zrelax1, else below zrelax2."""
    n = parent.size
    # fundamental supernodes
    fstart = np.empty(n + 1, np.int64)
    nf = 0
    for j in range(n):
        if j > 0 and parent[j - 1] == j and count[j - 1] == count[j] + 1:
            continue
        fstart[nf] = j
        nf += 1
    fstart[nf] = n
    # per fundamental supernode: scalar columns k, scalar rows m, true nonzeros, etree parent (a supernode)
    col2f = np.empty(n, np.int64)
    k = np.zeros(nf, np.int64)
    m = np.zeros(nf, np.int64)
    nz = np.zeros(nf, np.float64)
    for f in range(nf):
        for j in range(fstart[f], fstart[f + 1]):
            col2f[j] = f
            w = size[j]
            k[f] += w
            nz[f] += w * scount[j] - w * (w - 1) / 2.0
        m[f] = scount[fstart[f]]
    fparent = np.full(nf, -1, np.int64)
    for f in range(nf):
        last = fstart[f + 1] - 1
        if parent[last] != -1:
            fparent[f] = col2f[parent[last]]
    # amalgamation: a stack of final supernodes; merged[f] = the supernode f was merged into
    merged = np.arange(nf)
    stack = np.empty(nf, np.int64)
    top = -1
    zeros = np.zeros(nf, np.float64)
    for t in range(nf):
        while top >= 0:
            s = stack[top]
            ps = fparent[s]
            while ps != -1 and merged[ps] != ps:
                ps = merged[ps]
            if ps != t:
                break
            kk = k[s] + k[t]
            mm = k[s] + m[t]
            entries = kk * mm - kk * (kk - 1) / 2.0
            z = (entries - nz[s] - nz[t]) / entries
            if kk <= nrelax0:
                ok = True
            elif kk <= nrelax1:
                ok = z < zrelax0
            elif kk <= nrelax2:
                ok = z < zrelax1
            else:
                ok = z < zrelax2
            if not ok:
                break
            # merge s into t: t now starts at s's first column
            merged[s] = t
            fstart[t] = fstart[s]
            k[t] = kk
            m[t] = mm
            nz[t] = nz[s] + nz[t]
            zeros[t] = entries - nz[t]
            top -= 1
        top += 1
        stack[top] = t
    out = np.empty(top + 2, np.int64)
    for i in range(top + 1):
        out[i] = fstart[stack[i]]
    out[top + 1] = n
    return out


@njit(cache=True)
def last_column_structure(n, ptr, idx, parent, is_last, count):
    """Block rows below the diagonal of every block column flagged in ``is_last`` (ascending), as CSC
    (``sptr``, ``srows``); other columns get no entries."""
    sptr = np.zeros(n + 1, np.int64)
    for j in range(n):
        sptr[j + 1] = sptr[j] + (count[j] - 1 if is_last[j] else 0)
    srows = np.empty(sptr[n], np.int64)
    nxt = sptr[:-1].copy()
    mark = np.full(n, -1, np.int64)
    for k in range(n):
        mark[k] = k
        for p in range(ptr[k], ptr[k + 1]):
            i = idx[p]
            if i >= k:
                continue
            while mark[i] != k:
                if is_last[i]:
                    srows[nxt[i]] = k
                    nxt[i] += 1
                mark[i] = k
                i = parent[i]
    return sptr, srows


@njit(cache=True, fastmath=_FM)
def _dense_panel(P, kt, mt, j0, j1, tmp):
    """Left-looking dense Cholesky of columns j0..j1 of the column-major panel ``P`` (kt x mt: P[c, i] is
    L[row i, column c]), using columns j0..j-1 for column j (columns before j0 already applied). ``tmp``
    (at least mt) is a separate workspace: accumulating in it, not in P, lets LLVM vectorize (P's rows may
    alias each other). Returns the local column of a non-positive or NaN pivot, or -1."""
    one = P[0, 0] * 0 + 1
    for j in range(j0, j1):
        n = mt - j
        t = tmp[:n]
        pj = P[j, j:mt]
        for i in range(n):
            t[i] = pj[i]
        # rows of P through 1-D views: numba then vectorizes (2-D indexing P[c, j + i] kept these loops
        # scalar: 2 against 11 GFMA/s in fp32, 5 in fp64, measured on a 68 x 220 panel)
        c = j0
        while c + 4 <= j:
            a0 = P[c, j]
            a1 = P[c + 1, j]
            a2 = P[c + 2, j]
            a3 = P[c + 3, j]
            r0 = P[c, j:mt]
            r1 = P[c + 1, j:mt]
            r2 = P[c + 2, j:mt]
            r3 = P[c + 3, j:mt]
            for i in range(n):
                t[i] -= a0 * r0[i] + a1 * r1[i] + a2 * r2[i] + a3 * r3[i]
            c += 4
        while c < j:
            a = P[c, j]
            r0 = P[c, j:mt]
            for i in range(n):
                t[i] -= a * r0[i]
            c += 1
        d = t[0]
        if not (d > 0.0):
            return j
        d = np.sqrt(d)
        inv = one / d
        P[j, j] = d
        for i in range(1, n):
            pj[i] = t[i] * inv
    return -1


@njit(cache=True, fastmath=_FM)
def _blas_panel(P, kt, mt, nb, tmp):
    """:func:`_dense_panel` blocked by ``nb`` columns, the update of each block by the ones before it
    through BLAS (``np.dot``)."""
    for j0 in range(0, kt, nb):
        j1 = min(j0 + nb, kt)
        if j0 > 0:
            U = np.dot(np.ascontiguousarray(P[0:j0, j0:j1]).T, np.ascontiguousarray(P[0:j0, j0:mt]))
            for c in range(j1 - j0):
                for i in range(c, mt - j0):
                    P[j0 + c, j0 + i] -= U[c, i]
        bad = _dense_panel(P, kt, mt, j0, j1, tmp)
        if bad >= 0:
            return bad
    return -1


@njit(cache=True, fastmath=_FM)
def _factor(sptr, srows, scol0, sncol, poff, col2super, L, Map, pos, head, nxt, blas_min):
    """Left-looking supernodal Cholesky in place on the flat panel array ``L`` (loaded with the lower
    triangle of the matrix, zeros elsewhere; each panel column-major: k x m, row-major storage).
    ``Map`` (n scalars), ``pos``, ``head``, ``nxt`` (one per supernode) are int64 workspaces. Returns -1,
    or the scalar (permuted) column of a non-positive or NaN pivot."""
    nsuper = sncol.size
    maxm = 0
    for t in range(nsuper):
        head[t] = -1
        maxm = max(maxm, sptr[t + 1] - sptr[t])
    tmp = np.empty(maxm, L.dtype)
    for t in range(nsuper):
        bt = sptr[t]
        mt = sptr[t + 1] - bt
        kt = sncol[t]
        c0 = scol0[t]
        c1 = c0 + kt
        for i in range(mt):
            Map[srows[bt + i]] = i
        Pt = L[poff[t] : poff[t] + mt * kt].reshape((kt, mt))
        s = head[t]
        while s != -1:
            nx = nxt[s]
            bs = sptr[s]
            ms = sptr[s + 1] - bs
            ks = sncol[s]
            Ps = L[poff[s] : poff[s] + ms * ks].reshape((ks, ms))
            p = pos[s]
            q = p
            while q < ms and srows[bs + q] < c1:
                q += 1
            if (ms - p) * (q - p) * ks >= blas_min:
                C = np.dot(np.ascontiguousarray(Ps[:, p:q]).T, np.ascontiguousarray(Ps[:, p:ms]))
                for jj in range(q - p):
                    col = srows[bs + p + jj] - c0
                    for ii in range(jj, ms - p):
                        Pt[col, Map[srows[bs + p + ii]]] -= C[jj, ii]
            else:
                for jj in range(p, q):
                    col = srows[bs + jj] - c0
                    nr = ms - jj
                    acc = tmp[:nr]
                    for ii in range(nr):
                        acc[ii] = 0
                    c = 0
                    while c + 4 <= ks:  # 1-D row views, as in _dense_panel: vectorized
                        a0 = Ps[c, jj]
                        a1 = Ps[c + 1, jj]
                        a2 = Ps[c + 2, jj]
                        a3 = Ps[c + 3, jj]
                        r0 = Ps[c, jj:ms]
                        r1 = Ps[c + 1, jj:ms]
                        r2 = Ps[c + 2, jj:ms]
                        r3 = Ps[c + 3, jj:ms]
                        for ii in range(nr):
                            acc[ii] += a0 * r0[ii] + a1 * r1[ii] + a2 * r2[ii] + a3 * r3[ii]
                        c += 4
                    while c < ks:
                        a = Ps[c, jj]
                        r0 = Ps[c, jj:ms]
                        for ii in range(nr):
                            acc[ii] += r0[ii] * a
                        c += 1
                    pc = Pt[col]
                    for ii in range(nr):
                        pc[Map[srows[bs + jj + ii]]] -= acc[ii]
            pos[s] = q
            if q < ms:
                tg = col2super[srows[bs + q]]
                nxt[s] = head[tg]
                head[tg] = s
            s = nx
        if kt > 2 * _NB and kt * kt * mt >= blas_min:
            bad = _blas_panel(Pt, kt, mt, _NB, tmp)
        else:
            bad = _dense_panel(Pt, kt, mt, 0, kt, tmp)
        if bad >= 0:
            return c0 + bad
        pos[t] = kt
        if mt > kt:
            tg = col2super[srows[bt + kt]]
            nxt[t] = head[tg]
            head[tg] = t
    return -1


@njit(cache=True)
def factor(sptr, srows, scol0, sncol, poff, col2super, L, Map, pos, head, nxt, blas_min):
    """:func:`_factor` with flush-to-zero on (:mod:`mixslam.kernels.fpenv`) and the caller's mode restored."""
    old = ftz_on()
    bad = _factor(sptr, srows, scol0, sncol, poff, col2super, L, Map, pos, head, nxt, blas_min)
    ftz_restore(old)
    return bad


@njit(cache=True, nogil=True)
def _max_rows(sptr, t0, t1):
    """The most rows of a supernode among ``t0 .. t1-1`` (at least 1): the solves' work vector."""
    maxm = 1
    for t in range(t0, t1):
        maxm = max(maxm, sptr[t + 1] - sptr[t])
    return maxm


@njit(cache=True, fastmath=_FM, nogil=True)
def _forward(t0, t1, sptr, srows, scol0, sncol, poff, L, pscale, x, xtop, top0):
    """Forward substitution L y = x over supernodes ``t0 .. t1-1`` in place (x in the permuted order, shape
    (n, r)), reading the panels in their own format (fp64, fp32, or fp16 bits: each panel t then holds the
    factor / ``pscale[t]``, a power of two) and accumulating in x's dtype. Per supernode and right-hand side
    the rows it touches are gathered into a dense vector, solved with the dense triangle and the rectangle
    below it (contiguous, vectorized loops), and scattered back; updates of rows ``>= top0`` go to
    ``xtop[row - top0]`` instead of ``x`` (a lane's private buffer, :func:`solve`). The scale multiplies
    vector entries, not panel entries (exact: a power of two)."""
    r = x.shape[1]
    y = np.empty(_max_rows(sptr, t0, t1), x.dtype)
    for v in range(r):
        for t in range(t0, t1):
            bt = sptr[t]
            mt = sptr[t + 1] - bt
            kt = sncol[t]
            c0 = scol0[t]
            s = x.dtype.type(pscale[t])
            P = L[poff[t] : poff[t] + mt * kt].reshape((kt, mt))
            for i in range(kt):
                y[i] = x[c0 + i, v]
            for i in range(kt, mt):
                y[i] = 0.0
            for j in range(kt):
                yj = y[j] / (widen(P[j, j]) * s)
                y[j] = yj
                w = yj * s
                # through 1-D views: numba then vectorizes the loop (indexing P[j, i], y[i] kept it scalar:
                # 4-5x slower, measured on a 68 x 220 panel)
                yy = y[j + 1 : mt]
                pp = P[j, j + 1 : mt]
                for i in range(mt - j - 1):
                    yy[i] -= widen(pp[i]) * w
            for i in range(kt):
                x[c0 + i, v] = y[i]
            for i in range(kt, mt):
                row = srows[bt + i]
                if row >= top0:
                    xtop[row - top0, v] += y[i]
                else:
                    x[row, v] += y[i]


@njit(cache=True, fastmath=_FM, nogil=True)
def _backward(t0, t1, sptr, srows, scol0, sncol, poff, L, pscale, x):
    """Back substitution Lᵀ x = y over supernodes ``t1-1 .. t0`` in place (formats as :func:`_forward`).
    Writes only the columns of those supernodes."""
    r = x.shape[1]
    y = np.empty(_max_rows(sptr, t0, t1), x.dtype)
    for v in range(r):
        for t in range(t1 - 1, t0 - 1, -1):
            bt = sptr[t]
            mt = sptr[t + 1] - bt
            kt = sncol[t]
            c0 = scol0[t]
            s = x.dtype.type(pscale[t])
            P = L[poff[t] : poff[t] + mt * kt].reshape((kt, mt))
            for i in range(kt):
                y[i] = x[c0 + i, v]
            for i in range(kt, mt):
                y[i] = x[srows[bt + i], v]
            for j in range(kt - 1, -1, -1):
                yy = y[j + 1 : mt]
                pp = P[j, j + 1 : mt]
                acc = x.dtype.type(0.0)
                for i in range(mt - j - 1):
                    acc += widen(pp[i]) * yy[i]
                y[j] = (y[j] - acc * s) / (widen(P[j, j]) * s)
            for i in range(kt):
                x[c0 + i, v] = y[i]


@njit(cache=True)
def _subtree_sums(parent, w):
    """(W, first): each supernode's subtree weight (``w`` summed) and its subtree's first supernode, plus the
    virtual root at index n (``parent[t] == n`` for the roots); postorder: every child precedes its parent."""
    n = w.size
    W = np.zeros(n + 1)
    W[:n] = w
    first = np.empty(n + 1, np.int64)
    first[:n] = np.arange(n)
    first[n] = 0
    for t in range(n):
        p = parent[t]
        W[p] += W[t]
        first[p] = min(first[p], first[t])
    return W, first


def supernode_parents(sptr: np.ndarray, srows: np.ndarray, sncol: np.ndarray, col2super: np.ndarray) -> np.ndarray:
    """The supernodal elimination tree: each supernode's parent is the supernode owning its first row below
    its own columns (-1 for a root). In postorder, every parent comes after its children."""
    has = np.diff(sptr) > sncol
    parent = np.full(sncol.size, -1, dtype=np.int64)
    parent[has] = col2super[srows[(sptr[:-1] + sncol)[has]]]
    return parent


def lane_split(parent: np.ndarray, sptr: np.ndarray, sncol: np.ndarray, min_entries: int = 0):
    """Two independent lanes of the supernodal elimination tree ``parent`` (:func:`supernode_parents`) for
    :func:`solve`: ``(s0, sm, u)`` such that supernodes ``[s0, sm)`` and ``[sm, u)`` are disjoint unions of
    whole subtrees with a common parent ``u`` (or roots), so their substitutions touch no common column except
    those of ``u`` and its ancestors (``[u, n)``, the "top"). Chosen along the heaviest path from the root(s)
    to minimize the time of ``before + max(lane A, lane B) + top`` in panel entries; None when the factor has
    fewer than ``min_entries`` panel entries or no split brings that below :data:`LANE_MAX_TIME` of the
    total."""
    n = sncol.size
    w = (np.diff(sptr) * sncol).astype(np.float64)
    total = float(w.sum())
    if n < 3 or total < min_entries:
        return None
    parent = np.where(parent < 0, n, parent)  # n: a virtual root above the roots
    W, first = _subtree_sums(parent, w)
    order = np.argsort(parent, kind="stable")  # children of each node, in postorder
    cptr = np.searchsorted(parent[order], np.arange(n + 2))
    best, split = LANE_MAX_TIME * total, None
    node = n
    # a split inside a subtree of weight W saves at most W / 2: below 2 (1 - LANE_MAX_TIME) of the total, stop
    while W[node] >= 2.0 * (1.0 - LANE_MAX_TIME) * total:
        ch = order[cptr[node] : cptr[node + 1]]
        if ch.size == 0:
            break
        if ch.size >= 2:
            cs = np.cumsum(W[ch])
            a, b = cs[:-1], cs[-1] - cs[:-1]
            cost = total - cs[-1] + np.maximum(a, b)
            k = int(np.argmin(cost))
            if cost[k] < best:
                best, split = float(cost[k]), (int(first[ch[0]]), int(first[ch[k + 1]]), int(ch[-1]) + 1)
        node = int(ch[np.argmax(W[ch])])
    return split


def solve(sptr, srows, scol0, sncol, poff, L, pscale, x, lanes=None, threads=None) -> None:
    """x <- L⁻ᵀ L⁻¹ x in place (x in the permuted order, shape (n, r)) from panels in fp64/fp32 or fp16 bits
    with per-supernode scales ``pscale`` (ones for fp64/fp32).

    With ``lanes`` (:func:`lane_split`) the two lanes run on two threads (:func:`~.threads.run_chunks`):
    forward, the second lane sends its updates of the top's rows to a private buffer added after both
    finish; backward, the top is solved first and the lanes only read it. The arithmetic and its order are
    the same on one thread or two: the result does not depend on the thread count."""
    n = x.shape[0]
    nsuper = sncol.size
    args = (sptr, srows, scol0, sncol, poff, L, pscale, x)
    if lanes is None:
        _forward(0, nsuper, *args, x, n)
        _backward(0, nsuper, *args)
        return
    s0, sm, u = lanes
    top0 = int(scol0[u]) if u < nsuper else n
    xa = x[top0:]
    xb = np.zeros((n - top0, x.shape[1]), x.dtype)
    _forward(0, s0, *args, xa, top0)

    def forward(c):
        if c == 0:
            _forward(s0, sm, *args, xa, top0)
        else:
            _forward(sm, u, *args, xb, top0)

    run_chunks(forward, 2, threads)
    xa += xb
    _forward(u, nsuper, *args, xa, top0)
    _backward(u, nsuper, *args)

    def backward(c):
        if c == 0:
            _backward(s0, sm, *args)
        else:
            _backward(sm, u, *args)

    run_chunks(backward, 2, threads)
    _backward(0, s0, *args)


@njit(cache=True)
def panels_to_fp16(L, poff, out, pscale):
    """Each panel t of ``L`` (fp32/fp64) scaled by the power of two that puts its largest |entry| in [2^14,
    2^15) and rounded to fp16 bits in ``out``; ``pscale[t]`` = the inverse power (the factor = fp16 value x
    pscale). One pass per panel, no temporary; returns the rounding's statistics as
    ``kernels.fp16.quantize16_stats`` counts them (non-finite inputs, max |finite x| of the scaled values,
    overflows, underflows, subnormals)."""
    nonfinite = 0
    overflows = 0
    underflows = 0
    subnormals = 0
    max_abs = 0.0
    for t in range(poff.size - 1):
        big = 0.0
        for q in range(poff[t], poff[t + 1]):
            a = abs(np.float64(L[q]))
            if a > big and np.isfinite(a):
                big = a
        e = np.int64(np.floor(np.log2(big))) - 14 if big > 0.0 else np.int64(0)
        pscale[t] = np.ldexp(1.0, e)
        up = np.ldexp(1.0, -e)
        for q in range(poff[t], poff[t + 1]):
            x = np.float64(L[q]) * up  # exact: a power of two
            v = np.float32(x)
            b = f2h(v)
            out[q] = b
            if not np.isfinite(x):
                nonfinite += 1
                continue
            a = abs(x)
            if a > max_abs:
                max_abs = a
            o, u, sub = rounding_outcome(v, h2f(b), FP16_TINY)
            overflows += o
            underflows += u
            subnormals += sub
    return nonfinite, max_abs, overflows, underflows, subnormals


_WARM: set = set()


def warm() -> float:
    """Compile (or load from numba's cache) the numeric kernels for fp64 and fp32 panels on a 2 x 2 system;
    returns the seconds it took (0 after the first call)."""
    import time

    if _WARM:
        return 0.0
    t0 = time.perf_counter()
    sptr = np.array([0, 2], np.int64)
    srows = np.array([0, 1], np.int64)
    scol0 = np.array([0], np.int64)
    sncol = np.array([2], np.int64)
    poff = np.array([0, 4], np.int64)
    col2super = np.zeros(2, np.int64)
    Map, pos, head, nxt = (np.zeros(k, np.int64) for k in (2, 1, 1, 1))
    for dt in (np.float64, np.float32):
        L = np.array([2.0, 1.0, 0.0, 2.0], dtype=dt)
        factor(sptr, srows, scol0, sncol, poff, col2super, L, Map, pos, head, nxt, BLAS_MIN_FLOPS)
        solve(sptr, srows, scol0, sncol, poff, L, np.ones(1), np.ones((2, 1)))
    _subtree_sums(np.array([1], np.int64), np.ones(1))
    _WARM.add(True)
    return time.perf_counter() - t0
