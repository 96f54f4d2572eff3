"""fp64 sparse Cholesky (LLᵀ / LDLᵀ) for the Gauss-Newton / Levenberg-Marquardt normal equations H δ = g.

:class:`SparseCholesky` does the fill-reducing ordering and symbolic analysis once, for a fixed sparsity
pattern; every LM iteration then only calls :meth:`SparseCholesky.factorize` (numeric factorization with the
same pattern) and :meth:`SparseCholesky.solve`.

Backends, in the order ``backend="auto"`` tries them (fastest first, measured on the structure of the real
pose-graph datasets with ``benchmarks/direct_solvers.py``, one BLAS thread; see ``docs/direct_solver.md``):

``"mixslam"``
    This package's supernodal Cholesky (:mod:`mixslam.linear.supernodal`: numba kernels, BLAS for the large
    panels), in the core install. Fastest in the geometric mean of the six datasets (4.8x scipy against
    cvxopt's 3.6x), and the only backend with an fp32 factor (``dtype=np.float32``).
``"cvxopt"``
    CHOLMOD (supernodal or simplicial, chosen by CHOLMOD from the flop count) as bundled in the ``cvxopt``
    wheels (pip: ``cvxopt``, 21 MB wheel, GPL-3.0): 2-5.7x scipy on the six datasets.
``"pardiso"``
    Intel MKL PARDISO through ``pypardiso`` (pulls the ~1 GB ``mkl`` wheel; x86-64 only). As fast as cvxopt
    overall (faster on large 3-D graphs with several threads, slower on 2-D ones).
``"cholmod"``
    CHOLMOD through ``scikit-sparse`` (no wheels: ``pip install scikit-sparse`` compiles against the system
    SuiteSparse, e.g. ``apt-get install libsuitesparse-dev``; 0.4.x builds against SuiteSparse 5). Speed
    depends on the system BLAS.
``"qdldl"``
    QDLDL (simplicial LDLᵀ with AMD), pip: ``qdldl``. Good on 2-D graphs, slow on 3-D ones (no supernodes).
``"scipy"``
    Always available: SuperLU (``scipy.sparse.linalg.splu``) in symmetric mode with no pivoting, on the matrix
    pre-permuted once by a minimum-degree ordering of the compressed (block) graph; positive definiteness is
    checked on the pivots. It computes L and U, so it is several times slower than a real Cholesky.

The pattern may be given as the full symmetric matrix or as its lower (or upper) triangle; only one triangle
of every matrix is read (the lower one; a matrix with nothing below the diagonal is read as the upper
triangle). The diagonal is always part of the pattern.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import SolverError
from ..precision import QuantizationStats
from .ordering import compressed_graph, fill_reducing_order, sorted_unique

__all__ = ["SparseCholesky", "available_backends", "AUTO_ORDER"]

#: Order in which ``backend="auto"`` tries the backends (fastest first, by measurement).
AUTO_ORDER = ("mixslam", "cvxopt", "pardiso", "cholmod", "qdldl", "scipy")


class _NotPositiveDefinite(Exception):
    """Raised by a backend; ``column`` is the original (unpermuted) column index, or None if unknown."""

    def __init__(self, column: int | None, detail: str = ""):
        super().__init__(column, detail)
        self.column = column
        self.detail = detail


def _first_bad_pivot(inv_d: np.ndarray) -> int | None:
    """Elimination-order index of the first non-positive / non-finite pivot given 1/D (or D), else None."""
    bad = ~(inv_d > 0) | ~np.isfinite(inv_d)
    if not bad.any():
        return None
    return int(np.argmax(bad))


# ---------------------------------------------------------------------------------------------------------
# Backends. Each takes the lower-triangular CSC pattern (sorted, diagonal present) once and then the values
# of that pattern (``data``, float64, same order) per factorization; ``solve`` takes and returns (n, k).
# ---------------------------------------------------------------------------------------------------------
class _Backend(Protocol):
    """What :class:`SparseCholesky` calls on a backend instance."""

    name: str

    def factorize(self, data: np.ndarray) -> None: ...

    def solve(self, b: np.ndarray) -> np.ndarray: ...


class _CvxoptBackend:
    name = "cvxopt"

    def __init__(self, n, indptr, indices, diag_pos):
        import cvxopt
        import cvxopt.cholmod as cm

        self._cvx, self._cm = cvxopt, cm
        self.n = n
        self._nnz = int(indices.size)
        self._diag_pos = diag_pos
        cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        # Nonzero placeholder values: cvxopt keeps the triplet structure as given; values are replaced per call.
        self._A = cvxopt.spmatrix(
            cvxopt.matrix(np.ones(indices.size)), cvxopt.matrix(indices.astype(np.int64)), cvxopt.matrix(cols), (n, n)
        )
        with self._options():
            self._F = cm.symbolic(self._A, uplo="L")
        self._perm = None

    def _options(self):
        return _CvxoptOptions(self._cm)

    def _permutation(self) -> np.ndarray:
        """perm[k] = original index of the k-th pivot (needs a numeric factor in self._F)."""
        if self._perm is None:
            p = self._cvx.matrix(np.arange(self.n, dtype=np.float64))
            self._cm.solve(self._F, p, sys=7)  # p <- P p
            self._perm = np.rint(np.array(p).ravel()).astype(np.int64)
        return self._perm

    def _refactor_dummy(self):
        dummy = np.zeros(self._nnz)
        dummy[self._diag_pos] = 1.0
        self._A.V = self._cvx.matrix(dummy)
        with self._options():
            self._cm.numeric(self._A, self._F)

    def factorize(self, data):
        self._A.V = self._cvx.matrix(data)
        try:
            with self._options():
                self._cm.numeric(self._A, self._F)
        except ArithmeticError as e:
            k = int(e.args[0]) if e.args and isinstance(e.args[0], int) else None
            col = None
            if k is not None:
                try:
                    self._refactor_dummy()  # a valid numeric factor is needed to read the permutation
                    col = int(self._permutation()[k])
                except Exception:  # pragma: no cover - index is best effort
                    col = None
            raise _NotPositiveDefinite(col) from None
        # In simplicial (LDLᵀ) mode CHOLMOD accepts negative pivots: check D > 0 (1/D from a D-solve).
        x = self._cvx.matrix(np.ones(self.n))
        self._cm.solve(self._F, x, sys=6)
        k = _first_bad_pivot(np.array(x).ravel())
        if k is not None:
            raise _NotPositiveDefinite(int(self._permutation()[k]))

    def solve(self, b):
        B = self._cvx.matrix(b)
        self._cm.solve(self._F, B)
        return np.array(B).reshape(b.shape)


class _CvxoptOptions:
    """Sets cvxopt.cholmod.options['supernodal'] = 1 (CHOLMOD picks simplicial/supernodal) for one call."""

    def __init__(self, cm):
        self.cm = cm

    def __enter__(self):
        self.old = dict(self.cm.options)
        self.cm.options["supernodal"] = 1

    def __exit__(self, *exc):
        self.cm.options.clear()
        self.cm.options.update(self.old)
        return False


class _CholmodBackend:
    name = "cholmod"

    def __init__(self, n, indptr, indices, diag_pos):
        from sksparse.cholmod import CholmodNotPositiveDefiniteError, analyze

        self._NotPD = CholmodNotPositiveDefiniteError
        self.n = n
        self._indptr, self._indices = indptr.astype(np.int32), indices.astype(np.int32)
        M = sp.csc_matrix((np.ones(indices.size), self._indices, self._indptr), shape=(n, n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._F = analyze(M, mode="auto")
        self._perm = np.asarray(self._F.P(), dtype=np.int64)

    def factorize(self, data):
        M = sp.csc_matrix((data, self._indices, self._indptr), shape=(self.n, self.n))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._F.cholesky_inplace(M)
        except self._NotPD as e:
            k = getattr(e, "column", None)
            raise _NotPositiveDefinite(int(self._perm[k]) if k is not None and 0 <= k < self.n else None) from None
        k = _first_bad_pivot(self._F.solve_D(np.ones(self.n)))  # LDLᵀ mode accepts negative pivots
        if k is not None:
            raise _NotPositiveDefinite(int(self._perm[k]))

    def solve(self, b):
        return np.asarray(self._F.solve_A(b), dtype=np.float64).reshape(b.shape)


class _PardisoBackend:
    name = "pardiso"

    def __init__(self, n, indptr, indices, diag_pos):
        import ctypes

        from pypardiso.pardiso_wrapper import PyPardisoSolver

        self._ct = ctypes
        w = PyPardisoSolver(mtype=2)  # loads mkl_rt (ImportError if missing)
        self._w = w
        self.n = n
        # The lower CSC pattern is the upper CSR pattern PARDISO wants for a symmetric matrix.
        self._ia = np.ascontiguousarray(indptr, dtype=np.int32)
        self._ja = np.ascontiguousarray(indices, dtype=np.int32)
        w.iparm[:] = 0
        w.iparm[0] = 1  # iparm(1): not the defaults
        w.iparm[1] = 2  # iparm(2): METIS nested dissection
        w.iparm[9] = 8  # iparm(10): pivot perturbation 1e-8 (only used for indefinite types)
        w.iparm[34] = 1  # iparm(35): zero-based indices
        self._a = np.zeros(indices.size)
        self._a[diag_pos] = 1.0
        self._ready = False
        self._call(11, self._a, np.zeros((n, 1)))
        self._ready = True

    def _call(self, phase, a, b):
        ct, w = self._ct, self._w
        x = np.zeros_like(b)
        err = ct.c_int32(0)
        i32, f64 = ct.POINTER(ct.c_int32), ct.POINTER(ct.c_double)
        w._mkl_pardiso(
            w.pt.ctypes.data_as(ct.POINTER(w._pt_type[0])),
            ct.byref(ct.c_int32(1)),
            ct.byref(ct.c_int32(1)),
            ct.byref(ct.c_int32(2)),
            ct.byref(ct.c_int32(phase)),
            ct.byref(ct.c_int32(self.n)),
            a.ctypes.data_as(f64),
            self._ia.ctypes.data_as(i32),
            self._ja.ctypes.data_as(i32),
            w.perm.ctypes.data_as(i32),
            ct.byref(ct.c_int32(b.shape[1])),
            w.iparm.ctypes.data_as(i32),
            ct.byref(ct.c_int32(0)),
            b.ctypes.data_as(f64),
            x.ctypes.data_as(f64),
            ct.byref(err),
        )
        return err.value, x

    def factorize(self, data):
        self._a = np.ascontiguousarray(data, dtype=np.float64)
        err, _ = self._call(22, self._a, np.zeros((self.n, 1)))
        if err == -4:  # zero or negative pivot; iparm(30) = 1-based equation where it was found
            eq = int(self._w.iparm[29]) - 1
            raise _NotPositiveDefinite(eq if 0 <= eq < self.n else None)
        if err != 0:
            raise SolverError(f"PARDISO numeric factorization failed with error {err}")

    def solve(self, b):
        err, x = self._call(33, self._a, np.asfortranarray(b))
        if err != 0:
            raise SolverError(f"PARDISO solve failed with error {err}")
        return np.ascontiguousarray(x)

    def __del__(self):
        try:
            if self._ready:
                self._call(-1, self._a, np.zeros((self.n, 1)))
        except Exception:
            pass


class _QdldlBackend:
    name = "qdldl"

    def __init__(self, n, indptr, indices, diag_pos):
        import qdldl

        self._qdldl = qdldl
        self.n = n
        # Upper-triangular CSC (what qdldl reads with upper=True) = transpose of the lower pattern.
        pos = sp.csc_matrix((np.arange(1, indices.size + 1, dtype=np.float64), indices, indptr), shape=(n, n))
        U = pos.T.tocsc()
        U.sort_indices()
        self._gather = U.data.astype(np.int64) - 1
        self._uptr, self._uind = U.indptr, U.indices
        self._s = None  # created (symbolic analysis + first factorization) on the first factorize

    def factorize(self, data):
        U = sp.csc_matrix((data[self._gather], self._uind, self._uptr), shape=(self.n, self.n))
        try:
            if self._s is None:
                self._s = self._qdldl.Solver(U, upper=True)
            else:
                self._s.update(U, upper=True)
        except Exception as e:  # qdldl raises on a zero pivot; it does not say where
            raise _NotPositiveDefinite(None, str(e)) from None
        _, d, p = self._s.factors()
        k = _first_bad_pivot(np.asarray(d))
        if k is not None:
            raise _NotPositiveDefinite(int(np.asarray(p)[k]))

    def solve(self, b):
        out = np.empty_like(b)
        for j in range(b.shape[1]):
            out[:, j] = self._s.solve(np.ascontiguousarray(b[:, j]))
        return out


class _ScipyBackend:
    name = "scipy"
    _OPTS = {"diag_pivot_thresh": 0.0, "options": {"SymmetricMode": True}}

    def __init__(self, n, indptr, indices, diag_pos):
        self.n = n
        lcols = np.repeat(np.arange(n), np.diff(indptr))
        src = np.arange(indices.size)
        off = indices != lcols
        rows = np.concatenate([indices, lcols[off]])
        cols = np.concatenate([lcols, indices[off]])
        srcs = np.concatenate([src, src[off]])
        full = sp.csc_matrix((srcs + 1.0, (rows, cols)), shape=(n, n))
        full.sort_indices()
        # Ordering: multiple minimum degree of the compressed graph (one node per group of identical columns,
        # i.e. per pose block), expanded back; much cheaper than MMD on the scalar graph and as good.
        starts, sizes, gptr, gidx, _ = compressed_graph(n, indptr, indices)
        gorder = fill_reducing_order(gptr, gidx, starts.size, "mmd")
        fcols = np.repeat(np.arange(n), np.diff(full.indptr))
        gs, gz = starts[gorder], sizes[gorder]
        q = np.repeat(gs - np.concatenate([[0], np.cumsum(gz)[:-1]]), gz) + np.arange(n)
        iq = np.empty(n, dtype=np.int64)
        iq[q] = np.arange(n)
        Mp = sp.csc_matrix((full.data, (iq[full.indices], iq[fcols])), shape=(n, n))
        Mp.sort_indices()
        self._src = Mp.data.astype(np.int64) - 1
        self._mptr, self._mind = Mp.indptr, Mp.indices
        self._q = q
        self._lu = None

    def factorize(self, data):
        M = sp.csc_matrix((data[self._src], self._mind, self._mptr), shape=(self.n, self.n))
        self._lu = None
        try:
            lu = spla.splu(M, permc_spec="NATURAL", **self._OPTS)
        except RuntimeError as e:  # "Factor is exactly singular"
            raise _NotPositiveDefinite(None, str(e)) from None
        if not np.array_equal(lu.perm_r, lu.perm_c):  # an off-diagonal pivot was needed: a zero pivot
            raise _NotPositiveDefinite(None, "zero pivot")
        d = lu.U.diagonal()
        k = _first_bad_pivot(d)
        if k is not None:
            j = int(np.nonzero(lu.perm_c == k)[0][0])  # column of M eliminated k-th
            raise _NotPositiveDefinite(int(self._q[j]))
        self._lu = lu

    def solve(self, b):
        y = self._lu.solve(np.ascontiguousarray(b[self._q]))
        out = np.empty_like(b)
        out[self._q] = y.reshape(b.shape)
        return out


class _MixslamBackend:
    """This package's own supernodal Cholesky (:mod:`mixslam.linear.supernodal`) in fp64."""

    name = "mixslam"

    def __init__(self, n, indptr, indices, diag_pos, dtype=np.float64, ordering="auto"):
        from .supernodal import SupernodalCholesky

        self._s = SupernodalCholesky(n, indptr, indices, ordering=ordering)
        self.flops = self._s.flops
        self.dtype = np.dtype(dtype)
        self.nbytes = 0

    def factorize(self, data):
        from .supernodal import NotPositiveDefinite

        try:
            self._s.factorize(data, self.dtype)
        except NotPositiveDefinite as e:
            raise _NotPositiveDefinite(e.column) from None
        self.nbytes = self._s.nbytes

    def solve(self, b):
        return self._s.solve(b)


_BACKENDS: dict[str, Callable[..., _Backend]] = {
    "mixslam": _MixslamBackend,
    "cvxopt": _CvxoptBackend,
    "cholmod": _CholmodBackend,
    "pardiso": _PardisoBackend,
    "qdldl": _QdldlBackend,
    "scipy": _ScipyBackend,
}
_MODULES = {
    "mixslam": "mixslam.kernels.supernodal",
    "cvxopt": "cvxopt.cholmod",
    "cholmod": "sksparse.cholmod",
    "pardiso": "pypardiso",
    "qdldl": "qdldl",
    "scipy": "scipy.sparse.linalg",
}
_PIP = {
    "mixslam": "mixslam",
    "cvxopt": "cvxopt",
    "cholmod": "scikit-sparse (needs libsuitesparse-dev)",
    "pardiso": "pypardiso",
    "qdldl": "qdldl",
    "scipy": "scipy",
}
_AVAILABLE: dict[str, bool] = {}


def _is_available(name: str) -> bool:
    if name not in _AVAILABLE:
        try:
            importlib.import_module(_MODULES[name])
            if name == "pardiso":
                from pypardiso.pardiso_wrapper import PyPardisoSolver

                PyPardisoSolver()  # finds and loads mkl_rt
            _AVAILABLE[name] = True
        except Exception:  # ImportError, OSError (shared library), anything a broken install throws
            _AVAILABLE[name] = False
    return _AVAILABLE[name]


def available_backends() -> list[str]:
    """Names of the installed backends, fastest first (the order ``backend="auto"`` tries them)."""
    return [name for name in AUTO_ORDER if _is_available(name)]


def _canonical_lower(M: sp.spmatrix):
    """(row, col, value, index into M's canonical CSC data) of the lower triangle of M as read by this module.

    M is taken as the full symmetric matrix or its lower triangle; with nothing below the diagonal, as the
    upper triangle (transposed)."""
    C = sp.csc_matrix(M)
    C.sum_duplicates()
    cols = np.repeat(np.arange(C.shape[1]), np.diff(C.indptr))
    rows = C.indices
    below = rows > cols
    if not below.any() and (rows < cols).any():
        keep = np.nonzero(rows <= cols)[0]
        return cols[keep], rows[keep], C.data[keep], keep, C
    keep = np.nonzero(rows >= cols)[0]
    return rows[keep], cols[keep], C.data[keep], keep, C


class SparseCholesky:
    """Sparse Cholesky of symmetric positive definite matrices that share one sparsity pattern.

    ``SparseCholesky(pattern, backend="auto")`` orders and analyzes ``pattern`` once; then, per matrix,
    ``factorize(H)`` and ``solve(b)`` (``b`` of shape (n,) or (n, k)). ``backend`` is ``"auto"`` (the first of
    :func:`available_backends`) or one of :data:`AUTO_ORDER`; the attribute ``backend`` names the one used.
    ``dtype`` float32 (an fp32 factor, for iterative refinement) and an ``ordering`` other than ``"auto"``
    exist in the ``mixslam`` backend only, which they select (other backends use their own orderings).
    Non-positive-definite, singular or non-finite matrices raise :class:`~mixslam.errors.SolverError`; its
    ``column`` attribute is the column of H where the factorization broke down when the backend tells it.
    """

    def __init__(self, pattern, backend: str = "auto", dtype=np.float64, ordering: str = "auto"):
        dtype = np.dtype(dtype)
        if dtype not in (np.float64, np.float32):
            raise SolverError(f"factor dtype must be float64 or float32, got {dtype}")
        if (dtype != np.float64 or ordering != "auto") and backend not in ("mixslam", "auto"):
            raise SolverError(
                f"backend {backend!r} factors in fp64 with its own ordering; an fp32 factor or another "
                "ordering needs backend 'mixslam'"
            )
        if dtype != np.float64 or ordering != "auto":
            backend = "mixslam"
        self.dtype = dtype
        if not sp.issparse(pattern):
            raise SolverError(f"pattern must be a scipy.sparse matrix, got {type(pattern).__name__}")
        if pattern.ndim != 2 or pattern.shape[0] != pattern.shape[1]:
            raise SolverError(f"pattern must be square, got shape {pattern.shape}")
        n = int(pattern.shape[0])
        self.n = n
        rows, cols, _, keep, C = _canonical_lower(pattern)
        # Lower pattern with the full diagonal.
        diag_keys = np.arange(n, dtype=np.int64) * (n + 1)
        keys = cols.astype(np.int64) * n + rows
        has_diag = np.zeros(n, dtype=np.bool_)
        has_diag[cols[rows == cols]] = True
        # A canonical (column-major, rows sorted) lower triangle holding the whole diagonal, as every
        # BlockPattern gives, is its own sorted key list, each column starting at its diagonal: no sort and no
        # search (a third of the analysis of parking-garage's 6x6 pattern).
        canonical = bool(has_diag.all()) and (keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])))
        lkeys = keys if canonical else sorted_unique(np.concatenate([keys, diag_keys]))
        self._lkeys = lkeys
        if canonical:
            lrows = rows
            self._indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(cols, minlength=n), out=self._indptr[1:])
        else:
            lcols, lrows = lkeys // max(n, 1), lkeys % max(n, 1)
            self._indptr = np.concatenate([[0], np.cumsum(np.bincount(lcols, minlength=n))]).astype(np.int64)
        self._indices = lrows.astype(np.int64)
        self.nnz = int(lkeys.size)
        diag_pos = self._indptr[:-1].copy() if canonical else np.searchsorted(lkeys, diag_keys)
        # Fast path: an H whose canonical CSC arrays equal the pattern's -> gather its data directly.
        self._pat_indptr, self._pat_indices = C.indptr.copy(), C.indices.copy()
        if canonical:
            self._fast_src = np.asarray(keep, dtype=np.int64).copy()
        else:
            self._fast_src = np.full(self.nnz, -1, dtype=np.int64)
            self._fast_src[np.searchsorted(lkeys, keys)] = keep
        self._fast_missing = np.nonzero(self._fast_src < 0)[0]
        self._fast_src[self._fast_missing] = 0
        self._factorized = False

        if backend == "auto":
            names = [b for b in AUTO_ORDER if _is_available(b)]
        elif backend in _BACKENDS:
            if not _is_available(backend):
                raise SolverError(
                    f"sparse Cholesky backend {backend!r} is not installed (pip install "
                    f"{_PIP[backend]}); installed: {available_backends()}"
                )
            names = [backend]
        else:
            raise SolverError(
                f"unknown sparse Cholesky backend {backend!r}; expected 'auto' or one of {list(AUTO_ORDER)}"
            )
        last = None
        self._impl: _Backend | None  # None only for n == 0
        if n == 0:  # nothing to factor; keep the name for the record
            self._impl, self.backend = None, names[0]
            return
        for name in names:
            try:
                extra = {"dtype": dtype, "ordering": ordering} if name == "mixslam" else {}
                self._impl = _BACKENDS[name](n, self._indptr, self._indices, diag_pos, **extra)
                self.backend = name
                break
            except Exception as e:  # a broken optional install: try the next one under "auto"
                last = e
                if backend != "auto" or name == "scipy":
                    raise SolverError(f"sparse Cholesky backend {name!r} failed in the analysis: {e}") from e
        else:  # pragma: no cover - scipy is always last and always there
            raise SolverError(f"no sparse Cholesky backend could analyze the pattern: {last}")

    available_backends = staticmethod(available_backends)

    @property
    def flops(self) -> float | None:
        """Estimated flops of one numeric factorization (the ``mixslam`` backend's analysis; None for a
        backend that does not tell)."""
        return getattr(self._impl, "flops", None)

    # -- values --------------------------------------------------------------------------------------------
    def _lower_data(self, H) -> np.ndarray:
        if not sp.issparse(H):
            raise SolverError(f"H must be a scipy.sparse matrix, got {type(H).__name__}")
        if H.shape != (self.n, self.n):
            raise SolverError(f"H has shape {H.shape}, the pattern has shape {(self.n, self.n)}")
        if (
            H.format == "csc"
            and np.array_equal(H.indptr, self._pat_indptr)
            and np.array_equal(H.indices, self._pat_indices)
        ):
            data = np.asarray(H.data, dtype=np.float64)[self._fast_src]
            if self._fast_missing.size:
                data[self._fast_missing] = 0.0
            return data
        rows, cols, vals, _, _ = _canonical_lower(H)
        keys = cols.astype(np.int64) * self.n + rows
        pos = np.searchsorted(self._lkeys, keys)
        pos_c = np.minimum(pos, self.nnz - 1)
        bad = self._lkeys[pos_c] != keys
        if bad.any():
            i = int(np.argmax(bad))
            raise SolverError(
                f"H has an entry at ({int(rows[i])}, {int(cols[i])}) outside the pattern given to "
                "SparseCholesky; build a new SparseCholesky for a new pattern"
            )
        return np.bincount(pos_c, weights=np.asarray(vals, dtype=np.float64), minlength=self.nnz)

    def factorize(self, H) -> None:
        """Numeric factorization of H (same pattern as the constructor's; lower triangle read)."""
        self._factorized = False
        data = self._lower_data(H)
        if not np.isfinite(data).all():
            raise SolverError(f"H has {int((~np.isfinite(data)).sum())} non-finite (NaN/inf) entries")
        if self.n == 0:
            self._factorized = True
            return
        assert self._impl is not None  # n > 0
        try:
            self._impl.factorize(np.ascontiguousarray(data))
        except _NotPositiveDefinite as e:
            where = (
                f" at column {e.column} (the factorization broke down on that variable)" if e.column is not None else ""
            )
            detail = f" ({e.detail})" if e.detail else ""
            err = SolverError(
                f"H is not positive definite (singular or indefinite){where}{detail} "
                f"[backend {self.backend}]; add damping or fix the gauge"
            )
            err.column = e.column
            raise err from None
        self._factorized = True

    def solve(self, b: np.ndarray) -> np.ndarray:
        """x with H x = b for the last factorized H; b of shape (n,) or (n, k); fp64 result of b's shape."""
        if not self._factorized:
            raise SolverError("SparseCholesky.solve called without a successful factorize()")
        b = np.asarray(b, dtype=np.float64)
        if b.ndim not in (1, 2) or b.shape[0] != self.n:
            raise SolverError(f"right-hand side has shape {b.shape}, expected ({self.n},) or ({self.n}, k)")
        if b.size == 0:
            return np.zeros(b.shape)
        b2 = np.ascontiguousarray(b.reshape(self.n, -1))
        assert self._impl is not None  # n > 0 (b.size > 0)
        x = self._impl.solve(b2).reshape(b.shape)
        if not np.isfinite(x).all():
            raise SolverError("the solution has non-finite entries: H is numerically singular")
        return x

    def store_panels16(self, fallback: bool = True) -> QuantizationStats:
        """Keep the last factor in fp16 panels with a power-of-two scale per supernode (``mixslam`` backend
        only: :meth:`mixslam.linear.supernodal.SupernodalCholesky.store16`); later solves read half the
        bytes of fp32. Returns the rounding's statistics. The next :meth:`factorize` starts from fp32/fp64
        panels again."""
        if self.backend != "mixslam" or self._impl is None:
            raise SolverError(f"only the mixslam backend stores its factor in fp16 (backend {self.backend!r})")
        impl = self._impl
        assert isinstance(impl, _MixslamBackend)
        stats = impl._s.store16(fallback)
        impl.nbytes = impl._s.nbytes
        return stats

    def set_dtype(self, dtype) -> None:
        """Factor in ``dtype`` (float64 or float32) from the next :meth:`factorize` on, with the same
        analysis (``mixslam`` backend only)."""
        dtype = np.dtype(dtype)
        if self.backend != "mixslam" or dtype not in (np.float64, np.float32):
            raise SolverError(f"only the mixslam backend factors in float32 or float64 (backend {self.backend!r})")
        self.dtype = dtype
        if self._impl is not None:
            self._impl.dtype = dtype  # type: ignore[attr-defined]
        self._factorized = False

    @property
    def factorized(self) -> bool:
        """True after a successful :meth:`factorize` (until the next one fails)."""
        return self._factorized

    @property
    def nbytes(self) -> float:
        """Bytes of the numeric factor, NaN when the backend does not say (only ``mixslam`` does)."""
        return float(getattr(self._impl, "nbytes", float("nan")))

    def __repr__(self):
        return f"SparseCholesky(n={self.n}, nnz_lower={self.nnz}, backend={self.backend!r})"
