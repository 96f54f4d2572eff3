"""Precision as an explicit policy object: the formats, the policy, the presets and the thresholds table.

Nothing in mixslam reads a global dtype: every precision decision flows from a :class:`PrecisionPolicy`
passed down by the caller. The state (poses, points) and the update step are always fp64.

This module is data only (it imports nothing of mixslam but the errors). Rounding values to a format, and
storing them for the compiled kernels, is :mod:`mixslam.storage`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

import numpy as np

from .errors import PrecisionPolicyError

__all__ = [
    "Precision",
    "PrecisionPolicy",
    "QuantizationStats",
    "Thresholds",
    "THRESHOLDS",
    "thresholds",
    "next_wider",
    "is_16bit",
    "PRESETS",
]


class Precision(str, enum.Enum):
    """A floating-point format."""

    FP64 = "fp64"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def bits(self) -> int:
        return {"fp64": 64, "fp32": 32, "fp16": 16, "bf16": 16}[self.value]

    @property
    def mantissa_bits(self) -> int:
        """Significand precision p (including the implicit bit)."""
        return {"fp64": 53, "fp32": 24, "fp16": 11, "bf16": 8}[self.value]

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-p: the relative error bound of one rounding to nearest."""
        return 2.0 ** (-self.mantissa_bits)

    @property
    def max_finite(self) -> float:
        return {
            "fp64": float(np.finfo(np.float64).max),
            "fp32": float(np.finfo(np.float32).max),
            "fp16": 65504.0,
            "bf16": 3.3895313892515355e38,
        }[self.value]

    @property
    def min_normal(self) -> float:
        return {
            "fp64": float(np.finfo(np.float64).tiny),
            "fp32": float(np.finfo(np.float32).tiny),
            "fp16": 2.0**-14,
            "bf16": float(np.finfo(np.float32).tiny),
        }[self.value]

    @property
    def compute_dtype(self) -> np.dtype:
        """The numpy dtype arithmetic in this precision is carried out in (fp16/bf16 emulate via fp32)."""
        return np.dtype(np.float64) if self is Precision.FP64 else np.dtype(np.float32)

    @property
    def storage_dtype(self) -> np.dtype:
        """The numpy dtype values in this precision are stored in (bf16 as raw uint16 bits)."""
        return np.dtype({"fp64": np.float64, "fp32": np.float32, "fp16": np.float16, "bf16": np.uint16}[self.value])

    def contains(self, other: Precision) -> bool:
        """True if every value of ``other`` is exactly representable in ``self``."""
        if self is other:
            return True
        order = {Precision.FP64: 3, Precision.FP32: 2, Precision.FP16: 1, Precision.BF16: 1}
        return order[self] > order[other]

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        if isinstance(value, Precision):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise PrecisionPolicyError(
                f"unknown precision {value!r}; expected one of {[p.value for p in cls]}"
            ) from None


def is_16bit(p: Precision) -> bool:
    """True for the 16-bit formats (fp16, bf16): the one test of "is this 16-bit" in mixslam."""
    return p in (Precision.FP16, Precision.BF16)


def next_wider(p: Precision) -> Precision:
    """The format an overflowing 16-bit (or fp32) store falls back to."""
    return {
        Precision.FP16: Precision.FP32,
        Precision.BF16: Precision.FP32,
        Precision.FP32: Precision.FP64,
        Precision.FP64: Precision.FP64,
    }[p]


@dataclass(frozen=True)
class Thresholds:
    """The per-precision constants of the numerics (Theseus-style), instead of magic numbers in the code."""

    small_angle: float
    """SO(3)/SE(3) small-angle branch: |θ| below this uses the series forms (:mod:`mixslam.lie.so3`)."""
    tiny: float
    """A magnitude treated as zero in divisions."""
    rodrigues_small_angle2: float
    """θ² at or below which BAL's Rodrigues uses ``R = I + [w]x``: the machine epsilon of the format
    (Ceres 2.1: θ² > DBL_EPSILON -> Rodrigues)."""
    min_depth: float
    """Default |P.z| below which a reprojection's depth is clamped (absolute, scene units): fp64 1e-6 (real BAL
    depths are O(0.1 .. 100), |p|⁴ ~ 1e32 at most: far from overflow), fp32 1e-4 (at 1e-6 the distortion
    term and its Jacobian overflow fp32's 3.4e38; see :mod:`mixslam.problem.camera`)."""


#: The one table of per-precision thresholds. Residuals are evaluated in fp32 or fp64 only; the 16-bit rows
#: exist for completeness (what a kernel computing in that format would need).
THRESHOLDS = {
    Precision.FP64: Thresholds(1e-8, 1e-300, float(np.finfo(np.float64).eps), 1e-6),
    Precision.FP32: Thresholds(1e-4, 1e-30, float(np.finfo(np.float32).eps), 1e-4),
    Precision.FP16: Thresholds(1e-2, 6e-8, float(np.finfo(np.float16).eps), 1e-2),
    Precision.BF16: Thresholds(1e-2, 1e-30, 2.0**-7, 1e-2),
}


def thresholds(p: Precision | np.dtype | type) -> Thresholds:
    """The thresholds of a format, or of the format a numpy dtype computes in (float64 / float32)."""
    if isinstance(p, Precision):
        return THRESHOLDS[p]
    dt = np.dtype(p)
    if dt == np.float64:
        return THRESHOLDS[Precision.FP64]
    if dt == np.float32:
        return THRESHOLDS[Precision.FP32]
    raise PrecisionPolicyError(f"no thresholds for dtype {dt}; expected float64 or float32")


@dataclass(frozen=True)
class PrecisionPolicy:
    """Which floating-point format each operation of a solve uses.

    The state and the update are applied in fp64 whatever the policy says. ``*_storage`` is the format the
    values are held in memory; ``*_accumulate`` is the format the sums and products are carried out in. fp16
    storage with fp32 accumulation and true fp16 arithmetic are different policies.
    """

    name: str
    """Name shown in reports."""
    cost: Precision = Precision.FP64
    """Precision of the cost 0.5 Σ eᵀΩe that LM uses to accept or reject a step (fp32 or wider)."""
    residual: Precision = Precision.FP64
    """Precision the residuals and Jacobian blocks are evaluated in (fp32 or wider)."""
    jacobian_storage: Precision = Precision.FP64
    """Format the Jacobian blocks are stored in for the Krylov products J·x and Jᵀ·y."""
    jacobian_accumulate: Precision = Precision.FP64
    """Arithmetic of the Jacobian products (must contain ``jacobian_storage``)."""
    rhs: Precision = Precision.FP64
    """Precision of the right-hand side Jᵀr, always computed from the unquantized Jacobian."""
    preconditioner_storage: Precision = Precision.FP64
    """Format the preconditioner factors (block-Jacobi inverses, IC factor) are stored in."""
    preconditioner_accumulate: Precision = Precision.FP64
    """Arithmetic of the preconditioner application (the triangular solves)."""
    krylov: Precision = Precision.FP64
    """Format of the Krylov vectors and scalars (CG iterates, residuals, search directions)."""
    factor: Precision = Precision.FP64
    """Format the direct solver factors the damped normal matrix in (:mod:`mixslam.linear.supernodal`):
    fp64, or fp32 refined to the fp64 residual tolerance with fp64 residuals (a mixed-precision direct
    solve, :mod:`mixslam.linear.refinement`). There is no 16-bit factor: a 16-bit value here means the
    policy is served by CG only."""
    fallback: bool = True
    """If a quantization overflows despite scaling, redo that operation in the next wider format (and
    record it) instead of continuing with infinities."""
    adaptive: bool = False
    """Choose, at run time and per problem, the format of each operation that can be measured (the ``auto``
    presets, and bundle adjustment's ``mixed``): the direct solver's first step factors in ``factor`` (fp32,
    refined; bundle adjustment: the whole elimination in fp32), its second in fp64, and the faster of the
    two serves the rest of the solve; the choice and its reason go into the report (``DirectStats.choice``)."""

    def __post_init__(self):
        for name in ("fallback", "adaptive"):
            if not isinstance(getattr(self, name), bool):
                raise PrecisionPolicyError(
                    f"policy {self.name!r}: {name} must be True or False, got {getattr(self, name)!r}"
                )
        for name in _PRECISION_FIELDS:
            object.__setattr__(self, name, Precision.parse(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Refuse combinations that make no sense, with the rule that they break."""
        if self.cost not in (Precision.FP64, Precision.FP32):
            raise PrecisionPolicyError(
                f"policy {self.name!r}: cost precision {self.cost.value} is below fp32; the cost decides "
                "whether LM accepts a step and must be fp32 or fp64"
            )
        if self.residual not in (Precision.FP64, Precision.FP32):
            raise PrecisionPolicyError(
                f"policy {self.name!r}: residual precision {self.residual.value} is below fp32; residuals "
                "are differences of nearby poses and lose all digits in 16 bits. Use fp32 or fp64"
            )
        used_bf16 = [n for n in _PRECISION_FIELDS if getattr(self, n) is Precision.BF16]
        if used_bf16:
            raise PrecisionPolicyError(
                f"policy {self.name!r}: bf16 is not available in the solvers yet ({', '.join(used_bf16)}); "
                "quantize()/dequantize() support it, the kernels do not. Use fp16"
            )
        for store, acc in (
            ("jacobian_storage", "jacobian_accumulate"),
            ("preconditioner_storage", "preconditioner_accumulate"),
        ):
            s, a = getattr(self, store), getattr(self, acc)
            if not a.contains(s):
                raise PrecisionPolicyError(
                    f"policy {self.name!r}: {acc}={a.value} is narrower than {store}={s.value}; "
                    "accumulating in a narrower type than the storage throws digits away for nothing"
                )
        if self.rhs in (Precision.FP16, Precision.BF16):
            raise PrecisionPolicyError(
                f"policy {self.name!r}: rhs={self.rhs.value}; the gradient Jᵀr must be fp32 or wider "
                "(from a 16-bit Jacobian LM stalls)"
            )

    @property
    def uses_16bit(self) -> bool:
        return any(is_16bit(getattr(self, n)) for n in _PRECISION_FIELDS)

    @property
    def linear_solve_fp64(self) -> bool:
        """True when every operation of the linear solve is fp64 (Jacobian, preconditioner, Krylov vectors,
        right-hand side): the policy an fp64 direct solver serves exactly."""
        return all(getattr(self, n) is Precision.FP64 for n in _LINEAR_FIELDS)

    def replace(self, **changes) -> PrecisionPolicy:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        out = {}
        for n in ("name", *_PRECISION_FIELDS, "fallback", "adaptive"):
            v = getattr(self, n)
            out[n] = v.value if isinstance(v, Precision) else v
        return out

    @classmethod
    def preset(cls, name: str | PrecisionPolicy, problem: str = "pgo") -> PrecisionPolicy:
        """The named preset for a problem kind (``"pgo"`` or ``"ba"``); see the README's policy table."""
        if isinstance(name, PrecisionPolicy):
            return name
        key = str(name).lower()
        table = PRESETS.get(problem)
        if table is None:
            raise PrecisionPolicyError(f"unknown problem kind {problem!r}; expected 'pgo' or 'ba'")
        if key not in table:
            raise PrecisionPolicyError(f"unknown precision preset {name!r}; expected one of {sorted(table)}")
        return table[key]


_PRECISION_FIELDS = (
    "cost",
    "residual",
    "jacobian_storage",
    "jacobian_accumulate",
    "rhs",
    "preconditioner_storage",
    "preconditioner_accumulate",
    "krylov",
    "factor",
)

_LINEAR_FIELDS = (
    "jacobian_storage",
    "jacobian_accumulate",
    "rhs",
    "preconditioner_storage",
    "preconditioner_accumulate",
    "krylov",
    "factor",
)

_F64, _F32, _F16 = Precision.FP64, Precision.FP32, Precision.FP16


def _make_presets() -> dict:
    fp64 = PrecisionPolicy("fp64")
    fp32 = PrecisionPolicy(
        "fp32",
        cost=_F64,
        residual=_F32,
        jacobian_storage=_F32,
        jacobian_accumulate=_F32,
        rhs=_F32,
        preconditioner_storage=_F32,
        preconditioner_accumulate=_F32,
        krylov=_F32,
        factor=_F32,
    )
    # PGO: for CG (the paper's design) the IC triangular solves read a 16-bit factor, the vectors are fp32.
    # Its default solver is the fp32 factor refined to fp64 (factor=fp32); its residuals, gradient and cost
    # are fp64, which the refined steps need to reach the fp64 optimum (with fp32 residuals kitti_00 took 33
    # LM iterations instead of 5 and ended 2e-8 above it: benchmarks/pgo_mixed.py) and which cost a few
    # percent of a pose-graph solve.
    mixed_pgo = fp32.replace(name="mixed", residual=_F64, rhs=_F64, preconditioner_storage=_F16)
    # BA: fp32 residuals and Jacobian; the Schur solver's format is measured (adaptive): the fp32 reduced
    # camera system loses accuracy to cancellation in U - W V⁻¹ Wᵀ (κ(S) 1e10-1e11 on the BAL files) and
    # needs 4-45 PCG steps, so fp64 is usually kept (docs/ba_results.md). CG (solver='cg') reads the
    # Jacobian in fp16 with fp32 accumulation.
    mixed_ba = fp32.replace(name="mixed", jacobian_storage=_F16, adaptive=True)
    # Naive: every operation that can be 16-bit is, including the arithmetic (no fp32 accumulation).
    fp16 = PrecisionPolicy(
        "fp16",
        cost=_F32,
        residual=_F32,
        jacobian_storage=_F16,
        jacobian_accumulate=_F16,
        rhs=_F32,
        preconditioner_storage=_F16,
        preconditioner_accumulate=_F16,
        krylov=_F16,
        factor=_F16,
        fallback=False,
    )
    # Both 16-bit stores with fp32 arithmetic, for studies.
    mixed16 = fp32.replace(name="mixed16", jacobian_storage=_F16, preconditioner_storage=_F16, factor=_F16)
    # auto (pose graphs): mixed's fields, the factor's format chosen per problem by measurement.
    auto_pgo = mixed_pgo.replace(name="auto", adaptive=True)
    # auto (bundle adjustment): the same as mixed (which measures already).
    auto_ba = mixed_ba.replace(name="auto")
    return {
        "pgo": {"fp64": fp64, "fp32": fp32, "mixed": mixed_pgo, "auto": auto_pgo, "mixed16": mixed16, "fp16": fp16},
        "ba": {"fp64": fp64, "fp32": fp32, "mixed": mixed_ba, "auto": auto_ba, "mixed16": mixed16, "fp16": fp16},
    }


@dataclass
class QuantizationStats:
    """What happened when values were rounded to a narrower format."""

    count: int = 0
    """Values quantized."""
    overflows: int = 0
    """Finite values that became ±inf (|x| above the format's largest finite value after rounding)."""
    underflows: int = 0
    """Non-zero values that became exactly zero."""
    subnormals: int = 0
    """Non-zero values stored as subnormals (reduced precision)."""
    nonfinite_inputs: int = 0
    """Inputs that were already NaN or inf."""
    max_abs: float = 0.0
    """Largest finite input magnitude (after scaling)."""
    fallbacks: int = 0
    """Stores that overflowed and were redone in the next wider format (``PrecisionPolicy.fallback``)."""

    def merge(self, other: QuantizationStats) -> QuantizationStats:
        return QuantizationStats(
            self.count + other.count,
            self.overflows + other.overflows,
            self.underflows + other.underflows,
            self.subnormals + other.subnormals,
            self.nonfinite_inputs + other.nonfinite_inputs,
            max(self.max_abs, other.max_abs),
            self.fallbacks + other.fallbacks,
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = _make_presets()
