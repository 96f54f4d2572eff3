"""Fill-reducing orderings of a block graph (one node per pose or camera), computed once per problem.

Used by the fp64 direct solver's scipy backend and by the incomplete-Cholesky preconditioner: eliminating
the variables of a pose graph in a minimum-degree order instead of their file order keeps the Cholesky
factor almost as sparse as JᵀJ (ais2klinik: 50k factor blocks in minimum-degree order, 4.3M in file
order), so an IC(k) factor with a few levels of fill is close to the complete one.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def minimum_degree_order(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Multiple-minimum-degree order of the symmetric graph on ``n`` nodes with edges (rows[e], cols[e]).

    Returns ``order`` with ``order[k]`` = the node eliminated k-th. SuperLU's MMD on AᵀA + A (scipy
    ships no standalone AMD): it is run on a strictly diagonally dominant matrix with the graph's pattern,
    so no pivoting disturbs it, and only its column permutation is kept (the incomplete LU's, which is the
    complete LU's: a test checks it). Deterministic.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    off = rows != cols
    r = np.concatenate([rows[off], cols[off]])
    c = np.concatenate([cols[off], rows[off]])
    G = sp.csc_matrix((np.full(r.size, -1.0), (r, c)), shape=(n, n))
    G.sum_duplicates()
    G.data[:] = -1.0
    deg = np.diff(G.indptr).astype(np.float64)
    G = (G + sp.diags(deg + 1.0)).tocsc()  # strictly diagonally dominant: no pivoting needed
    # SuperLU orders, then factors; only the order is wanted. Its incomplete LU with every off-diagonal entry
    # dropped computes the same column order (same MMD, same etree postorder) with a trivial numeric phase:
    # 1.3-2.2x faster than the complete LU on the shared graphs (intel 2.8 -> 2.1 ms, city10000 25 -> 14 ms).
    lu = spla.spilu(
        G,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        drop_tol=1e30,
        fill_factor=1.0,
        options={"SymmetricMode": True},
    )
    return np.argsort(lu.perm_c).astype(np.int64)  # perm_c[i] = new position of node i


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique for int keys by sort (numpy 2's hash-based unique is ~50x slower on large int arrays)."""
    a = np.sort(a)
    if a.size:
        a = a[np.concatenate([[True], a[1:] != a[:-1]])]
    return a


def compressed_graph(n: int, indptr: np.ndarray, indices: np.ndarray):
    """The graph of a symmetric pattern given by its lower CSC triangle (rows sorted, diagonal present), with
    every run of consecutive columns of identical pattern (a pose's or a camera's columns) merged into one
    node (compiled, O(nnz): :func:`mixslam.kernels.supernodal.compress`).

    Returns ``(starts, sizes, gptr, gidx, group)``: node g covers columns ``starts[g] .. starts[g] +
    sizes[g]``; ``(gptr, gidx)`` is its adjacency in CSC form (both triangles, no diagonal, sorted);
    ``group[c]`` is the node of column c."""
    from ..kernels.supernodal import compress, full_pattern

    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    fptr, fidx = full_pattern(int(n), indptr, indices)
    return compress(int(n), fptr, fidx)


#: Orderings :func:`fill_reducing_order` knows.
ORDERINGS = ("mmd", "metis", "amd", "natural")


def fill_reducing_order(gptr: np.ndarray, gidx: np.ndarray, n: int, method: str = "mmd") -> np.ndarray:
    """Elimination order (``order[k]`` = node eliminated k-th) of the graph in CSC adjacency form.

    ``"mmd"``: multiple minimum degree (SuperLU's, :func:`minimum_degree_order`, always available);
    ``"amd"``: approximate minimum degree (SuiteSparse AMD as shipped in cvxopt; raises ImportError
    without it); ``"metis"``: METIS's multilevel nested dissection (``pymetis``, MIT, in the ``fast`` and
    ``metis`` extras; raises ImportError without it); ``"natural"``: the identity.

    Measured (``docs/direct_solver.md``): METIS needs 2-3.3x fewer factorization flops than MMD on generated
    grids (50,000-pose 2-D, 8,000-pose 3-D) and about the same on the shared graphs (0.8-1.3x). A
    level-structure nested dissection of our own (George's automatic nested dissection, minimum degree in
    the leaves) was tried and removed: 1.2-15x the flops of MMD on every graph, grids included."""
    if method not in ORDERINGS:
        raise ValueError(f"unknown ordering {method!r}; expected one of {ORDERINGS}")
    if method == "natural" or n <= 1:
        return np.arange(n, dtype=np.int64)
    gptr, gidx = np.ascontiguousarray(gptr, np.int64), np.ascontiguousarray(gidx, np.int64)
    cache = _ORDER_CACHE
    if cache is None:
        return _order(gptr, gidx, int(n), method)
    key = (method, int(n), hashlib.blake2b(gptr.tobytes() + gidx.tobytes(), digest_size=16).digest())
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = _order(gptr, gidx, int(n), method)
    return hit.copy()


_ORDER_CACHE: dict | None = None


@contextlib.contextmanager
def shared_orderings():
    """Inside, :func:`fill_reducing_order` computes each graph's ordering once: one pose-graph solve orders
    the same compressed graph for the chordal initialization's two solves and for the LM's factor (block sizes
    apart). The SuperLU MMD and METIS orderings cost 7-8 ms each on a 1,700-pose graph, more than its
    factorization (measured on intel.g2o: the chordal initialization took 86 ms, 60 of them in orderings; 23
    ms with the orderings shared). Scoped to one solve (not a process-wide cache), so repeated solves of a
    graph, as benchmarks time them, each pay for their orderings."""
    global _ORDER_CACHE
    outer = _ORDER_CACHE
    if outer is None:
        _ORDER_CACHE = {}
    try:
        yield
    finally:
        _ORDER_CACHE = outer


def _order(gptr: np.ndarray, gidx: np.ndarray, n: int, method: str) -> np.ndarray:
    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(gptr))
    if method == "mmd":
        return minimum_degree_order(gidx, cols, n)
    if method == "metis":
        import pymetis

        graph = pymetis.CSRAdjacency(np.asarray(gptr, np.int64), np.asarray(gidx, np.int64))
        perm, _ = pymetis.nested_dissection(graph)
        return np.asarray(perm, dtype=np.int64)
    if method == "amd":
        import cvxopt
        import cvxopt.amd

        low = gidx > cols
        r = np.concatenate([gidx[low], np.arange(n)])
        c = np.concatenate([cols[low], np.arange(n)])
        A = cvxopt.spmatrix(1.0, cvxopt.matrix(r), cvxopt.matrix(c), (n, n))
        return np.asarray(cvxopt.amd.order(A, uplo="L"), dtype=np.int64).ravel()
    raise ValueError(f"unknown ordering {method!r}; expected one of {ORDERINGS}")


def available_orderings() -> list[str]:
    """The orderings the ``auto`` choice of :class:`~mixslam.linear.supernodal.SupernodalCholesky` compares:
    ``mmd`` always, ``metis`` when ``pymetis`` is installed."""
    import importlib.util

    return ["mmd"] + (["metis"] if importlib.util.find_spec("pymetis") is not None else [])
