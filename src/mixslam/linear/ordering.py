"""Fill-reducing orderings of a block graph (one node per pose or camera), computed once per problem.

Used by the fp64 direct solver's scipy backend and by the incomplete-Cholesky preconditioner: eliminating
the variables of a pose graph in a minimum-degree order instead of their file order keeps the Cholesky
factor almost as sparse as JᵀJ (ais2klinik: 50k factor blocks in minimum-degree order, 4.3M in file
order), so an IC(k) factor with a few levels of fill is close to the complete one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def minimum_degree_order(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Multiple-minimum-degree order of the symmetric graph on ``n`` nodes with edges (rows[e], cols[e]).

    Returns ``order`` with ``order[k]`` = the node eliminated k-th. SuperLU's MMD on AᵀA + A (scipy
    ships no standalone AMD): it is run on a strictly diagonally dominant matrix with the graph's pattern,
    so no pivoting disturbs it, and only its column permutation is kept. Deterministic.
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
    lu = spla.splu(G, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return np.argsort(lu.perm_c).astype(np.int64)  # perm_c[i] = new position of node i
