"""The supernodal factor's triangular solves on a JAX device, level-scheduled (issue 19).

:class:`~mixslam.linear.supernodal.SupernodalCholesky` solves ``L Lᵀ x = b`` one supernode after another
(:func:`mixslam.kernels.supernodal._solve`): a loop of small dense solves a GPU cannot run well. Here the
same arithmetic is regrouped by the supernodal elimination tree:

Schedule (host, once per symbolic analysis: :func:`level_schedule`)
    parent(t) = the supernode owning t's first below-diagonal row (none when t has no row below its
    triangle); level(t) = 0 for a leaf, else 1 + the largest level of its children. A supernode's forward
    substitution reads only what its descendants wrote (lower levels) and adds only into its ancestors' rows
    (higher levels), so every supernode of one level can run at once; the backward substitution runs the
    levels in reverse. Each level's supernodes are padded to one dense shape (or, where that wastes more
    than ``max_waste`` times the real panel entries, split into a few size buckets, each padded to its own
    largest supernode): panels ``(n_t, K, M)``, own-column indices ``(n_t, K)`` and below-row indices
    ``(n_t, M - K)``, padding pointing at a dummy row ``n`` (the device vector has ``n + 1`` rows; the dummy
    stays exactly 0).

Panels (per factorization: :meth:`DeviceTriangular.load`)
    Panel t (``P[c, i]`` = the factor's entry at row ``srows[sptr[t] + i]``, column ``scol0[t] + c``) goes
    into slot ``(c, i)`` for its own rows ``i < kt`` and ``(c, K + i - kt)`` for the rows below; padded
    columns get a unit diagonal and zeros elsewhere, so padded entries solve to 0 and update nothing. The
    storage dtype is kept (fp64, fp32, or fp16 as uint16 bits with the per-supernode power-of-two scales of
    :meth:`~mixslam.linear.supernodal.SupernodalCholesky.store16`) and widened to the vector dtype inside
    the kernel.

Solve (:meth:`DeviceTriangular.solve`, one jitted function per schedule, levels unrolled at trace time)
    forward, level by level: gather the own entries, solve the ``K x K`` triangles batched
    (``lax.linalg.triangular_solve``), the below-diagonal updates ``-Lbelow · y`` batched (einsum with
    ``preferred_element_type`` = the vector dtype), set the own entries, scatter-add the updates; backward,
    levels in reverse: gather own and below entries, ``rhs = x_own - Lbelowᵀ x_below``, batched triangular
    solve with the transposed triangle, set the own entries. Accumulation in the vector dtype (fp64 or
    fp32), the permutation in and out as :meth:`SupernodalCholesky.solve`. The results agree with the CPU
    solve up to the order of the sums.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..linear.supernodal import SupernodalCholesky
from .jax_device import device as _device
from .jax_device import jax, jnp, lax

__all__ = ["LevelGroup", "TriangularSchedule", "level_schedule", "DeviceTriangular", "triangular_solver"]

_FP16_ONE = np.uint16(0x3C00)
"""The fp16 bits of 1.0 (the padded diagonal of fp16 panels)."""


@dataclass(frozen=True)
class LevelGroup:
    """Supernodes of one level padded to one shape: ``supers`` (n_t,), their ``kt`` / ``mt``, the padded
    ``K`` (own columns) and ``M`` (rows), ``own`` (n_t, K) own-column indices and ``below`` (n_t, M - K)
    below-row indices (permuted order; padding = the dummy row n)."""

    level: int
    supers: np.ndarray
    kt: np.ndarray
    mt: np.ndarray
    K: int
    M: int
    own: np.ndarray
    below: np.ndarray

    @property
    def real_entries(self) -> int:
        """Panel entries the supernodes hold (Σ kt·mt)."""
        return int(np.sum(self.kt * self.mt))

    @property
    def padded_entries(self) -> int:
        """Panel entries of the padded array (n_t·K·M)."""
        return int(self.supers.size * self.K * self.M)


@dataclass(frozen=True)
class TriangularSchedule:
    """The level schedule of a :class:`SupernodalCholesky`'s triangular solves (:func:`level_schedule`)."""

    n: int
    parent: np.ndarray
    """Supernodal elimination tree: parent supernode of each supernode (-1 for a root)."""
    level: np.ndarray
    """Forward level of each supernode (leaves 0, a parent above all its children)."""
    levels: tuple[tuple[LevelGroup, ...], ...]
    """Per level, its padded groups (one unless the level was bucketed)."""
    max_waste: float

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ngroups(self) -> int:
        """Batched operations per pass (groups over all levels)."""
        return sum(len(lv) for lv in self.levels)

    @property
    def real_entries(self) -> int:
        return sum(g.real_entries for lv in self.levels for g in lv)

    @property
    def padded_entries(self) -> int:
        return sum(g.padded_entries for lv in self.levels for g in lv)

    @property
    def waste(self) -> float:
        """Padded over real panel entries (1.0: no padding)."""
        return self.padded_entries / max(self.real_entries, 1)

    @property
    def layout(self) -> tuple[tuple[tuple[int, int, int], ...], ...]:
        """(n_t, K, M) per group per level: the static shape the jitted solve is specialized to."""
        return tuple(tuple((int(g.supers.size), g.K, g.M) for g in lv) for lv in self.levels)


def _etree_levels(S: SupernodalCholesky) -> tuple[np.ndarray, np.ndarray]:
    nsuper = int(S.nsuper)
    parent = S.parent
    has = parent >= 0
    if np.any(parent[has] <= np.nonzero(has)[0]):
        raise ValueError("supernodal elimination tree is not topologically ordered (parent <= child)")
    level = np.zeros(nsuper, dtype=np.int64)
    lv = level.tolist()
    par = parent.tolist()
    for t in range(nsuper):  # children before parents (parent > child)
        p = par[t]
        if p >= 0 and lv[p] < lv[t] + 1:
            lv[p] = lv[t] + 1
    level[:] = lv
    return parent, level


def _buckets(kt: np.ndarray, mt: np.ndarray, max_waste: float) -> list[np.ndarray]:
    """Positions into (kt, mt) split into groups each padding to at most ``max_waste`` x its entries: one
    group when the whole level does, else greedy over the supernodes sorted by size (largest first), a new
    group started whenever the next supernode would take the current one past ``max_waste``."""
    real = kt * mt
    nb = mt - kt
    if kt.size * int(kt.max()) * int(kt.max() + nb.max()) <= max_waste * int(real.sum()):
        return [np.arange(kt.size)]
    groups: list[np.ndarray] = []
    cur: list[int] = []
    K = B = tot = 0
    for i in np.lexsort((kt, mt))[::-1].tolist():
        k2, b2, tot2 = max(K, int(kt[i])), max(B, int(nb[i])), tot + int(real[i])
        if cur and (len(cur) + 1) * k2 * (k2 + b2) > max_waste * tot2:
            groups.append(np.array(cur))
            cur = []
            k2, b2, tot2 = int(kt[i]), int(nb[i]), int(real[i])
        cur.append(i)
        K, B, tot = k2, b2, tot2
    groups.append(np.array(cur))
    return groups


def level_schedule(S: SupernodalCholesky, max_waste: float = 4.0) -> TriangularSchedule:
    """The level schedule of ``S``'s triangular solves (host side; needs only the symbolic analysis).

    Each level is one padded group when its padded panels hold at most ``max_waste`` times its real entries,
    else split into size buckets that each do (``max_waste=inf``: one group per level)."""
    n = int(S.n)
    parent, level = _etree_levels(S)
    mt_all = np.diff(S.sptr)
    kt_all = np.asarray(S.sncol, dtype=np.int64)
    nlev = int(level.max()) + 1 if level.size else 0
    by_level = np.argsort(level, kind="stable")
    bounds = np.searchsorted(level[by_level], np.arange(nlev + 1))
    levels = []
    for lv in range(nlev):
        sup_lv = by_level[bounds[lv] : bounds[lv + 1]]
        groups = []
        for pos in _buckets(kt_all[sup_lv], mt_all[sup_lv], max_waste):
            sup = np.sort(sup_lv[pos])
            kt, mt = kt_all[sup], mt_all[sup]
            K = int(kt.max())
            M = K + int((mt - kt).max())
            c = np.arange(K)
            own = np.where(c[None, :] < kt[:, None], S.scol0[sup][:, None] + c[None, :], n)
            j = np.arange(M - K)
            nb = (mt - kt)[:, None]
            src = np.minimum(S.sptr[sup][:, None] + kt[:, None] + j[None, :], S.srows.size - 1)
            below = np.where(j[None, :] < nb, S.srows[src], n)
            groups.append(LevelGroup(lv, sup, kt, mt, K, M, own.astype(np.int64), below.astype(np.int64)))
        levels.append(tuple(groups))
    return TriangularSchedule(n, parent, level, tuple(levels), float(max_waste))


def _pack(S: SupernodalCholesky, g: LevelGroup, flat: np.ndarray, one) -> np.ndarray:
    """Group ``g``'s panels as (n_t, K, M) in ``flat``'s dtype: own rows at slots < K, rows below at K..,
    the strict lower part of the own triangle and all padding 0, padded diagonal = ``one``."""
    K, M = g.K, g.M
    kt, mt = g.kt[:, None, None], g.mt[:, None, None]
    c = np.arange(K)[None, :, None]
    i = np.arange(M)[None, None, :]
    own_slot = i < K
    valid = (c < kt) & np.where(own_slot, (i < kt) & (i >= c), i - K < mt - kt)
    row = np.where(own_slot, i, i - K + kt)
    src = S.poff[g.supers][:, None, None] + c * mt + row
    out = np.zeros((g.supers.size, K, M), dtype=flat.dtype)
    out[valid] = flat[src[valid]]
    pad = np.arange(K)[None, :] >= g.kt[:, None]
    t_idx, c_idx = np.nonzero(pad)
    out[t_idx, c_idx, c_idx] = one
    return out


@functools.lru_cache(maxsize=32)
def triangular_solver(n: int, layout, fp16: bool, scaled: bool, vdtype: str):
    """The jitted solve ``run(arrays, perm, iperm, b)`` for one schedule layout, panel format and vector dtype
    (:class:`DeviceTriangular` holds the arguments; a compiled LM step calls it on them)."""
    vt = jnp.dtype(vdtype)

    def widen(Q):
        if fp16:
            Q = lax.bitcast_convert_type(Q, jnp.float16)
        return Q.astype(vt)

    def run(arrays, perm, iperm, b):
        x = b.reshape(n, -1)[perm].astype(vt)
        x = jnp.concatenate([x, jnp.zeros((1, x.shape[1]), vt)])
        for lv_arr in arrays:  # forward: L y = x
            sets, adds = [], []
            for Qs, s, own, below in lv_arr:
                Q = widen(Qs)
                K = own.shape[1]
                xo = x[own]
                if scaled:
                    xo = xo / s[:, None, None]
                y = lax.linalg.triangular_solve(Q[:, :, :K], xo, left_side=True, lower=False, transpose_a=True)
                upd = jnp.einsum("tci,tcr->tir", Q[:, :, K:], y, preferred_element_type=vt)
                if scaled:
                    upd = upd * s[:, None, None]
                sets.append((own, y))
                adds.append((below, -upd))
            for own, y in sets:
                x = x.at[own].set(y)
            for below, u in adds:
                x = x.at[below].add(u)
        for lv_arr in arrays[::-1]:  # backward: Lᵀ x = y
            sets = []
            for Qs, s, own, below in lv_arr:
                Q = widen(Qs)
                K = own.shape[1]
                acc = jnp.einsum("tci,tir->tcr", Q[:, :, K:], x[below], preferred_element_type=vt)
                if scaled:
                    rhs = (x[own] - acc * s[:, None, None]) / s[:, None, None]
                else:
                    rhs = x[own] - acc
                z = lax.linalg.triangular_solve(Q[:, :, :K], rhs, left_side=True, lower=False, transpose_a=False)
                sets.append((own, z))
            for own, z in sets:
                x = x.at[own].set(z)
        out = x[:n][iperm]
        return out.reshape(b.shape)

    return jax.jit(run)


class DeviceTriangular:
    """The triangular solves of a factored :class:`SupernodalCholesky` on a JAX device.

    ``DeviceTriangular(S, dtype=np.float64, device=None, schedule=None)`` computes the level schedule
    (:func:`level_schedule`, or takes ``schedule``) and copies S's current panels (fp64, fp32, or fp16 bits
    with their scales after ``S.store16()``) to ``device`` (:func:`~.jax_device.device`: "cpu", "gpu" or
    None). :meth:`solve` (b of shape (n,) or (n, k), numpy or JAX) returns x with ``L Lᵀ x = b`` permuted as
    ``S.solve`` does, a JAX array of ``dtype`` (the accumulation dtype: float64 or float32). After a new
    ``S.factorize`` (same analysis) :meth:`load` copies the new panels; the compiled function is reused
    when their format is unchanged."""

    def __init__(
        self,
        S: SupernodalCholesky,
        dtype: Any = np.float64,
        device: str | None = None,
        schedule: TriangularSchedule | None = None,
        max_waste: float = 4.0,
    ):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float64, np.float32):
            raise ValueError(f"vector dtype must be float64 or float32, got {self.dtype}")
        self.S = S
        self.device = _device(device)
        self.schedule = schedule if schedule is not None else level_schedule(S, max_waste)
        self.perm = jax.device_put(np.asarray(S.perm, np.int64), self.device)
        self.iperm = jax.device_put(np.asarray(S.iperm, np.int64), self.device)
        self._idx = [
            [(jax.device_put(g.own, self.device), jax.device_put(g.below, self.device)) for g in lv]
            for lv in self.schedule.levels
        ]
        self.arrays: list[list[tuple[Any, Any, Any, Any]]] = []
        self.storage = ""
        self.nbytes = 0
        self.load(S)

    def load(self, S: SupernodalCholesky | None = None) -> None:
        """Copy the panels of ``S`` (default: the one given at construction; same analysis) to the device."""
        S = self.S if S is None else S
        if S.L16 is not None and S.pscale is not None:
            flat, one, scale, storage = S.L16, _FP16_ONE, S.pscale, "fp16"
        elif S.L is not None:
            flat, one, scale, storage = S.L, S.L.dtype.type(1.0), None, str(S.L.dtype).replace("float", "fp")
        else:
            raise ValueError("the factor holds no panels: call factorize first")
        arrays, nbytes = [], 0
        for lv, idx in zip(self.schedule.levels, self._idx):
            lv_arr = []
            for g, (own, below) in zip(lv, idx):
                Q = _pack(S, g, flat, one)
                s = np.ones(g.supers.size, self.dtype) if scale is None else scale[g.supers].astype(self.dtype)
                nbytes += Q.nbytes + (0 if scale is None else s.nbytes)
                lv_arr.append((jax.device_put(Q, self.device), jax.device_put(s, self.device), own, below))
            arrays.append(lv_arr)
        self.arrays, self.storage, self.nbytes = arrays, storage, nbytes
        self._fn = triangular_solver(
            self.schedule.n, self.schedule.layout, storage == "fp16", scale is not None, self.dtype.name
        )

    def solve(self, b):
        """x with L Lᵀ x = b (b of shape (n,) or (n, k)) in the original order, a JAX array of ``dtype``."""
        if b.shape[0] != self.schedule.n or b.ndim > 2:
            raise ValueError(f"b must have shape ({self.schedule.n},) or ({self.schedule.n}, k), got {b.shape}")
        b = jax.device_put(jnp.asarray(b, self.dtype), self.device)
        return self._fn(self.arrays, self.perm, self.iperm, b)
