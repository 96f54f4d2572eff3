"""numba kernels: fp16 load/round intrinsics, two-block Jacobian products, block IC(0) and triangular solves.

Every kernel has a plain numpy twin (suffix ``_ref``) used by the tests. fp16 values are passed to the kernels
as ``uint16`` bit patterns (``a16.view(np.uint16)``); ``acc16=True`` selects emulated (exact) fp16 arithmetic.
"""

from __future__ import annotations

from .cache import ensure_numba_cache

ensure_numba_cache()  # before the first @njit(cache=True) below: a read-only install must not fail to import

from .fp16 import (  # noqa: E402
    arith_tag,
    f2h,
    f2h_array,
    f2h_ref,
    from_bits,
    h2f,
    h2f_array,
    h2f_ref,
    load,
    round16,
    round16_array,
    round16_ref,
    to_bits,
)
from .ic import (  # noqa: E402
    check_lower_bcsr,
    ic0_factor,
    ic0_factor_ref,
    ic_solve,
    ic_solve_ref,
    lower_bcsr_from_dense,
    lower_bcsr_to_dense,
    two_block_normal_lower,
)
from .products import (  # noqa: E402
    check_two_block,
    jac_matvec,
    jac_matvec_ref,
    jac_rmatvec,
    jac_rmatvec_ref,
    normal_matvec,
    normal_matvec_ref,
)

__all__ = [
    "h2f",
    "f2h",
    "round16",
    "load",
    "arith_tag",
    "h2f_array",
    "f2h_array",
    "round16_array",
    "h2f_ref",
    "f2h_ref",
    "round16_ref",
    "to_bits",
    "from_bits",
    "jac_matvec",
    "jac_rmatvec",
    "normal_matvec",
    "jac_matvec_ref",
    "jac_rmatvec_ref",
    "normal_matvec_ref",
    "check_two_block",
    "ic0_factor",
    "ic_solve",
    "ic0_factor_ref",
    "ic_solve_ref",
    "check_lower_bcsr",
    "lower_bcsr_to_dense",
    "lower_bcsr_from_dense",
    "two_block_normal_lower",
]
