"""BlockPattern's numeric assembly: the blocks of JᵀJ, the full symmetric CSC and the fused assembly.

Every result is checked against a dense JᵀJ built by numpy from the Jacobian, and against the previous numpy
implementation (einsum + bincount blocks, a data permutation to the CSC), kept here as the reference, to 1e-12
relative: fp64 and fp32 (and fp16, widened) Jacobians, fixed poses, duplicate edges between the same pair in
both orientations, self-loops, fill blocks, elimination orders, k != p.
"""

import numpy as np
import pytest

from mixslam.linear.block_pattern import BlockPattern

RTOL = 1e-12


# ---- references -----------------------------------------------------------------------------------------------


def reference_assemble(pat: BlockPattern, A, B) -> np.ndarray:
    """The previous implementation of BlockPattern.assemble (edges with ia != ib)."""
    p = pat.p
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    AtA = np.einsum("mki,mkj->mij", A, A)
    BtB = np.einsum("mki,mkj->mij", B, B)
    AtB = np.einsum("mki,mkj->mij", A, B)
    AtB = np.where(pat.ab_is_upper[:, None, None], np.swapaxes(AtB, 1, 2), AtB)
    pos = np.concatenate([pat.pos_aa, pat.pos_bb, pat.pos_ab])
    vals = np.concatenate([AtA, BtB, AtB]).reshape(-1, p * p)
    keep = pos >= 0
    pos, vals = pos[keep], vals[keep]
    out = np.empty((pat.nnzb, p * p))
    for c in range(p * p):
        out[:, c] = np.bincount(pos, weights=vals[:, c], minlength=pat.nnzb)
    return out.reshape(pat.nnzb, p, p)


def reference_to_csc(pat: BlockPattern, blocks, diag_add=None):
    """The previous BlockPattern.to_csc: the template's values are 1 + the flat block entry each position holds."""
    b = blocks.copy()
    if diag_add is not None:
        idx = np.arange(pat.p)
        b[pat.diag_pos[:, None], idx[None, :], idx[None, :]] += diag_add.reshape(pat.nv, pat.p)
    M = pat.csc_pattern().copy()
    M.data = b.ravel()[pat.csc_pattern().data.astype(np.int64) - 1]
    return M


def dense_normal(A, B, ia, ib, nv, order=None) -> np.ndarray:
    """JᵀJ (nv*p, nv*p) of the dense Jacobian, in the pattern's order (position k holds variable order[k])."""
    m, k, p = A.shape
    J = np.zeros((m * k, nv * p))
    for e in range(m):
        for X, v in ((A[e], ia[e]), (B[e], ib[e])):
            if v >= 0:
                J[e * k : (e + 1) * k, v * p : (v + 1) * p] += np.asarray(X, np.float64)
    H = J.T @ J
    if order is not None:
        idx = (np.asarray(order)[:, None] * p + np.arange(p)).ravel()
        H = H[np.ix_(idx, idx)]
    return H


def lower_blocks_dense(pat: BlockPattern, blocks) -> np.ndarray:
    """The dense lower triangle (block rows >= block columns) the blocks stand for."""
    p = pat.p
    D = np.zeros((pat.nv * p, pat.nv * p))
    for b in range(pat.nnzb):
        i, j = pat.block_rows[b], pat.indices[b]
        D[i * p : (i + 1) * p, j * p : (j + 1) * p] = blocks[b]
    return D


def block_lower(H, p) -> np.ndarray:
    """H with the blocks above the block diagonal zeroed."""
    n = H.shape[0] // p
    mask = np.kron(np.tril(np.ones((n, n))), np.ones((p, p)))
    return H * mask


def rel(X, Y) -> float:
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    Y = Y.toarray() if hasattr(Y, "toarray") else np.asarray(Y)
    return float(np.abs(X - Y).max() / max(np.abs(Y).max(), 1e-300))


def random_graph(seed, nv=25, m=80, p=3, k=None, dtype=np.float64, fixed=True, duplicates=True, self_loops=False):
    """Random edges with fixed poses (-1), repeated pairs in both orientations and, optionally, self-loops."""
    rng = np.random.default_rng(seed)
    k = p if k is None else k
    ia = rng.integers(-1 if fixed else 0, nv, m)
    ib = rng.integers(-1 if fixed else 0, nv, m)
    same = (ia == ib) & (ia >= 0)
    if not self_loops:
        ib = np.where(same, (ib + 1) % nv, ib)
    ia[0], ib[0] = -1, 0  # a fixed pose anchors a row in any case
    if duplicates:  # the same pair again, both ways round
        ia = np.concatenate([ia, [3, 4, 3, 3]])
        ib = np.concatenate([ib, [4, 3, 4, -1]])
    if self_loops:
        ia = np.concatenate([ia, [5, 7]])
        ib = np.concatenate([ib, [5, 7]])
    m = ia.size
    A = (rng.standard_normal((m, k, p)) * np.exp(rng.normal(size=p))).astype(dtype)
    B = (rng.standard_normal((m, k, p)) * np.exp(rng.normal(size=p))).astype(dtype)
    return ia.astype(np.int64), ib.astype(np.int64), A, B


# ---- tests -----------------------------------------------------------------------------------------------------

CASES = [
    dict(p=3),
    dict(p=6),
    dict(p=6, dtype=np.float32),
    dict(p=3, dtype=np.float16),
    dict(p=6, k=2),
    dict(p=3, fixed=False, duplicates=False),
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: "-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in c.items())
)
@pytest.mark.parametrize("fill", [0, 2])
@pytest.mark.parametrize("ordered", [False, True])
def test_assembly_matches_dense_and_previous_implementation(case, fill, ordered):
    nv = 25
    ia, ib, A, B = random_graph(1, nv=nv, **case)
    p = A.shape[2]
    order = np.random.default_rng(2).permutation(nv) if ordered else None
    pat = BlockPattern(ia, ib, nv, p, fill, order)
    H = dense_normal(A, B, ia, ib, nv, order)
    d = np.random.default_rng(3).random(nv * p)

    blocks = pat.assemble(A, B)
    assert blocks.dtype == np.float64 and blocks.shape == (pat.nnzb, p, p)
    assert rel(blocks, reference_assemble(pat, A, B)) < RTOL
    assert rel(lower_blocks_dense(pat, blocks), block_lower(H, p)) < RTOL
    assert np.array_equal(blocks[pat.diag_pos], np.swapaxes(blocks[pat.diag_pos], 1, 2))  # exactly symmetric

    for diag_add in (None, d):
        Hd = H if diag_add is None else H + np.diag(diag_add)
        ref = reference_to_csc(pat, reference_assemble(pat, A, B), diag_add)
        for M in (pat.to_csc(blocks, diag_add), pat.assemble_csc(A, B, diag_add)):
            assert M.format == "csc" and M.dtype == np.float64
            assert np.array_equal(M.indptr, pat.csc_pattern().indptr)
            assert np.array_equal(M.indices, pat.csc_pattern().indices)
            assert rel(M, ref) < RTOL
            assert rel(M, Hd) < RTOL
            assert (M != M.T).nnz == 0  # exactly symmetric


def test_fill_blocks_are_zero():
    ia = np.arange(9, dtype=np.int64)
    ib = ia + 1  # a chain with its middle eliminated first: fill blocks no edge touches
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((9, 3, 3)), rng.standard_normal((9, 3, 3))
    pat = BlockPattern(ia, ib, 10, 3, fill_level=10, order=np.array([5, 4, 6, 3, 7, 2, 8, 1, 9, 0]))
    H = dense_normal(A, B, ia, ib, 10, pat.order)
    filled = np.array([pat.pos_ab.tolist().count(b) == 0 and b not in pat.diag_pos for b in range(pat.nnzb)])
    assert filled.any()
    blocks = pat.assemble(A, B)
    assert not blocks[filled].any()
    assert rel(pat.assemble_csc(A, B), H) < RTOL
    assert rel(pat.to_csc(blocks), H) < RTOL


def test_self_loops_add_both_cross_terms():
    """An edge from a pose to itself: its row is (A + B) on one variable, so JᵀJ gains (A + B)ᵀ(A + B)."""
    nv = 12
    ia, ib, A, B = random_graph(4, nv=nv, self_loops=True)
    assert (ia == ib).any()
    pat = BlockPattern(ia, ib, nv, 3)
    H = dense_normal(A, B, ia, ib, nv)
    assert rel(lower_blocks_dense(pat, pat.assemble(A, B)), block_lower(H, 3)) < RTOL
    assert rel(pat.assemble_csc(A, B), H) < RTOL
    assert rel(pat.to_csc(pat.assemble(A, B)), H) < RTOL


def test_results_are_independent_and_inputs_untouched():
    nv = 20
    ia, ib, A, B = random_graph(5, nv=nv)
    pat = BlockPattern(ia, ib, nv, 3)
    A0, B0 = A.copy(), B.copy()
    blocks = pat.assemble(A, B)
    b0 = blocks.copy()
    d = np.ones(nv * 3)
    H1 = pat.to_csc(blocks, d)
    H2 = pat.assemble_csc(A, B, d)
    assert np.array_equal(blocks, b0)  # to_csc does not add the damping in place
    assert np.array_equal(A, A0) and np.array_equal(B, B0)
    ref = H1.copy()
    H1.data[:] = -1.0
    H1.indices[:] = 0
    H3 = pat.assemble_csc(A, B, d)
    assert rel(H3, ref) < RTOL and rel(H2, ref) < RTOL
    assert pat.csc_pattern().data.min() >= 1.0  # the template is untouched


def test_non_contiguous_and_mixed_dtype_inputs():
    nv = 15
    ia, ib, A, B = random_graph(6, nv=nv, p=6)
    pat = BlockPattern(ia, ib, nv, 6)
    H = dense_normal(A, B, ia, ib, nv)
    At = np.asfortranarray(A)
    Bs = np.concatenate([B, B], axis=2)[:, :, ::2]  # strided view
    Bs[...] = B
    assert rel(pat.assemble_csc(At, Bs), H) < RTOL
    H32 = dense_normal(A.astype(np.float32), B, ia, ib, nv)
    assert rel(pat.assemble_csc(A.astype(np.float32), B), H32) < RTOL
    assert rel(pat.to_csc(pat.assemble(A, B).reshape(-1)), H) < RTOL  # flat blocks are taken too


def test_nan_in_the_jacobian_reaches_the_matrix():
    nv = 10
    ia, ib, A, B = random_graph(7, nv=nv, fixed=False, duplicates=False)
    pat = BlockPattern(ia, ib, nv, 3)
    A[2, 1, 0] = np.nan
    assert np.isnan(pat.assemble(A, B)).any()
    assert np.isnan(pat.assemble_csc(A, B).data).any()


def test_shape_errors():
    nv = 10
    ia, ib, A, B = random_graph(8, nv=nv)
    pat = BlockPattern(ia, ib, nv, 3)
    with pytest.raises(ValueError, match="shape"):
        pat.assemble(A[1:], B[1:])
    with pytest.raises(ValueError, match="shape"):
        pat.assemble_csc(A, B[:, :, :2])
    with pytest.raises(ValueError, match="blocks"):
        pat.to_csc(np.zeros((pat.nnzb + 1, 3, 3)))
    with pytest.raises(ValueError, match="diag_add"):
        pat.to_csc(pat.assemble(A, B), np.ones(nv * 3 + 1))


def test_empty_jacobian():
    pat = BlockPattern(np.zeros(0, np.int64), np.zeros(0, np.int64), 4, 3)
    A = np.zeros((0, 3, 3))
    assert not pat.assemble(A, A).any()
    M = pat.assemble_csc(A, A, np.arange(12.0))
    assert np.array_equal(M.toarray(), np.diag(np.arange(12.0)))


def test_warm_returns_seconds():
    pat = BlockPattern(np.array([0], np.int64), np.array([1], np.int64), 2, 3)
    assert pat.warm() >= 0.0
    assert pat.warm(k=2) >= 0.0


@pytest.mark.data
@pytest.mark.parametrize("name", ["parking-garage.g2o", "intel.g2o"])
def test_real_pose_graph_matches_previous_implementation(data_dir, name):
    from mixslam.io.g2o import read_pose_graph
    from mixslam.pgo import PoseGraphProblem
    from mixslam.precision import PrecisionPolicy

    g = read_pose_graph(data_dir / "pgo" / name)
    for preset in ("fp64", "fp32"):
        prob = PoseGraphProblem(g, PrecisionPolicy.preset(preset, problem="pgo"))
        lin = prob.linearize(prob.initial_state)
        pat = prob.pattern
        d = 1e-4 * lin.column_sq_norms()
        ref = reference_to_csc(pat, reference_assemble(pat, lin.A, lin.B), d)
        assert rel(pat.to_csc(pat.assemble(lin.A, lin.B), d), ref) < RTOL
        assert rel(pat.assemble_csc(lin.A, lin.B, d), ref) < RTOL
