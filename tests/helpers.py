"""Shared test helpers: the one tolerance rule, derived from the unit roundoff of the precision under test."""
from __future__ import annotations

from mixslam.precision import Precision, PrecisionPolicy

#: The formats a linear solve's answer depends on. The preconditioner's storage and arithmetic are left out:
#: they change how fast CG converges, not what it converges to.
SOLUTION_FIELDS = ("jacobian_storage", "jacobian_accumulate", "rhs", "krylov")


def unit_roundoff(precision: str | Precision | PrecisionPolicy) -> float:
    """u of a format; of a policy, the largest u among the formats its linear solve's answer depends on."""
    if isinstance(precision, PrecisionPolicy):
        return max(getattr(precision, name).unit_roundoff for name in SOLUTION_FIELDS)
    return Precision.parse(precision).unit_roundoff


def tol_for(precision: str | Precision | PrecisionPolicy, n: int = 1, kappa: float = 1.0, c: float = 10.0) -> float:
    """Relative tolerance c · n · u · κ: the forward error bound of a computation whose backward error is n
    roundings of unit roundoff u (one per term of a length-n sum, or one per stored operand entry), on a problem
    of condition number κ; c is the safety factor (rounding errors rarely add up to the worst case, and never
    more than the first-order bound by much when n · u · κ < 1)."""
    return c * n * unit_roundoff(precision) * kappa
