"""The complete sparse Cholesky factor as the device CG's preconditioner (pose graphs): the mixed-precision
direct solve on a device.

The damped, column-scaled normal matrix of a linearization, ``S (JᵀJ) S + diag(d)`` (the matrix the device
CG solves, :func:`~.jax_lm.step_fn`), is assembled and factored on the host by the CPU's supernodal Cholesky
(:class:`~mixslam.linear.supernodal.SupernodalCholesky`: analysis once, fp64 or fp32 numeric factor, the panels
optionally stored in fp16 with one power-of-two scale per supernode, :meth:`~mixslam.linear.supernodal.
SupernodalCholesky.store16`) and its panels copied to the device, where every CG iteration applies it by
level-scheduled block triangular solves (:mod:`.jax_triangular`: one batched triangular solve and one
scatter-add per level of the supernodal elimination tree). CG's residuals stay in the policy's Krylov
precision, so the fp32 (or fp16-stored) factor is refined to the CG tolerance: Ceres'
``use_mixed_precision_solves``, Carson and Higham's preconditioned refinement.

The factor is reused across LM steps (the article's "factor once", here with a complete factor): a later
step's matrix has other column scales S' and damping, so the factor of ``S H S`` preconditions ``S' H' S'`` as
``(S'/S) L Lᵀ (S'/S)``, applied as ``x = r ⊙ (L Lᵀ)⁻¹ (r ⊙ v)`` with ``r = S / S'``. It is refactored at a new
linearization when the previous step needed more than :data:`REFACTOR_AFTER` CG iterations (the factor no
longer keeps CG short); each decision is counted in the report. No numeric factorization runs on the device:
a GPU factorization is the step beyond this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..linear.block_pattern import BlockPattern
from ..linear.supernodal import SupernodalCholesky
from ..precision import Precision, PrecisionPolicy
from .jax_device import BackendError, jax
from .jax_linearization import DeviceLinearization, column_sq_norms
from .jax_storage import device_column_scale, scaled_blocks, scaled_damping
from .jax_triangular import DeviceTriangular, triangular_solver

__all__ = ["REFACTOR_AFTER", "FactorLayout", "DeviceFactor", "FactorPreconditioner"]

REFACTOR_AFTER = 10
"""CG iterations of a step above which the next linearization refactors (fewer: the factor is kept)."""


@dataclass(frozen=True)
class FactorLayout:
    """What the compiled step specializes on (hashable): the schedule's layout and the panels' format."""

    n: int
    layout: tuple
    fp16: bool
    scaled: bool
    vdtype: str


class DeviceFactor:
    """The host-factored, device-applied preconditioner of one pose graph (see the module docstring).

    ``DeviceFactor(lin, policy, device)`` analyzes the normal matrix's pattern of the linearization ``lin``
    (host copies of its indices); :meth:`factor` assembles and factors a linearization's scaled, damped matrix
    and copies the panels; :meth:`operands` are the device arrays the step takes, :attr:`layout` its static
    description."""

    def __init__(self, lin: DeviceLinearization, policy: PrecisionPolicy, device, vdtype: str):
        if lin.pb:
            raise BackendError("the device Cholesky preconditioner is for pose graphs (one set of variables)")
        self.nv, self.p = int(lin.nv), int(lin.p)
        self.pattern = BlockPattern(np.asarray(lin.ia), np.asarray(lin.ib), self.nv, self.p)
        self.factor_dtype = np.float64 if policy.factor is Precision.FP64 else np.float32
        self.store16 = policy.factor is Precision.FP16
        self.device = device
        self.vdtype = np.dtype(vdtype)
        self.S: SupernodalCholesky | None = None
        self.tri: DeviceTriangular | None = None
        self.scale0: Any = None
        self.factorizations = 0
        self.nbytes = 0

    def factor(self, lin: DeviceLinearization, lam: float, min_diagonal: float, max_diagonal: float) -> None:
        """Factor ``S (JᵀJ) S + diag(d)`` of ``lin`` at damping ``lam`` (the step's own S and d) and load it."""
        colsq = column_sq_norms(lin)
        scale = device_column_scale(colsq)
        d = np.asarray(scaled_damping(colsq, scale, lam, min_diagonal, max_diagonal))
        A, B = (np.asarray(x) for x in scaled_blocks(lin, scale))
        H = self.pattern.assemble_csc(A, B, diag_add=d)
        L = _lower(H)
        if self.S is None:
            self.S = SupernodalCholesky(L.shape[0], L.indptr, L.indices)
        self.S.factorize(L.data, self.factor_dtype)
        if self.store16:
            self.S.store16()
        if self.tri is None:
            self.tri = DeviceTriangular(self.S, self.vdtype, device=self.device)
        else:
            self.tri.load(self.S)
        self.scale0 = jax.device_put(scale, self.device)
        self.factorizations += 1
        self.nbytes = int(self.tri.nbytes)

    @property
    def layout(self) -> FactorLayout:
        tri = self.tri
        assert tri is not None, "factor() first"
        return FactorLayout(tri.schedule.n, tri.schedule.layout, tri.storage == "fp16", self.store16, self.vdtype.name)

    def operands(self) -> tuple:
        """(panels, perm, iperm, the scales the factor was built with): the step's device arguments."""
        tri = self.tri
        assert tri is not None, "factor() first"
        return (tri.arrays, tri.perm, tri.iperm, self.scale0)


@dataclass(frozen=True)
class FactorPreconditioner:
    """The factor as a CG preconditioner for one step: a JAX pytree (``operands`` and the step's column
    ``scale`` traced, the ``layout`` static) that :func:`~.jax_cgnr.pcg` calls as ``M(v)``."""

    operands: Any
    """:meth:`DeviceFactor.operands`."""
    scale: Any
    """The step's column scales."""
    layout: FactorLayout

    def __call__(self, v):
        """M⁻¹ v = ``r ⊙ (L Lᵀ)⁻¹ (r ⊙ v)``, r = (the factor's scales) / (the step's), in the vector dtype."""
        arrays, perm, iperm, scale0 = self.operands
        lay = self.layout
        run = triangular_solver(lay.n, lay.layout, lay.fp16, lay.scaled, lay.vdtype)
        r = (scale0 / self.scale).astype(lay.vdtype)
        return r * run(arrays, perm, iperm, r * v.astype(lay.vdtype))


jax.tree_util.register_dataclass(FactorPreconditioner, data_fields=["operands", "scale"], meta_fields=["layout"])


def _lower(H):
    """The lower triangle of a full symmetric CSC matrix, sorted, as CSC."""
    import scipy.sparse as sp

    L = sp.tril(H, format="csc")
    L.sort_indices()
    return L
