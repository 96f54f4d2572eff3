"""The counted work of a CG iteration and of a linear solve's setup: the analytic model behind figure 6's
*counted flops* and *counted bytes* (and ``benchmarks/ba.py``), evaluated with the block sizes, counts and
storage formats a real solve used.
"""

from __future__ import annotations

from .problems import Problem

INDEX_BYTES = 8
"""Bytes of an index (the kernels' index arrays are int64)."""


def problem_dims(prob: Problem) -> dict:
    """Counts the work model needs: m row blocks, k rows per block, present Jacobian entries E (blocks of
    fixed variables are skipped by the kernels), stored entries Et, unknowns n; BA: the block-Jacobi
    entries; PGO: nv, p and the ia/ib arrays (for the IC pattern)."""
    from ..precision import PrecisionPolicy
    from ..problem.bundle import BundleData
    from ..problem.pose_graph import PoseGraph

    if prob.kind == "ba":
        from ..ba import BundleProblem

        assert isinstance(prob.data, BundleData)
        bp = BundleProblem(prob.data, PrecisionPolicy.preset("fp64", "ba"))
        m, k, pc = int(bp.ia.size), 2, bp.pc
        E = k * (pc * int((bp.ia >= 0).sum()) + 3 * int((bp.ib >= 0).sum()))
        return {
            "m": m,
            "k": k,
            "E": E,
            "Et": m * k * (pc + 3),
            "n": bp.nc * pc + 3 * bp.npts,
            "jacobi_entries": bp.nc * pc * pc + 9 * bp.npts,
            "pre": "jacobi",
        }
    from ..pgo import PoseGraphProblem

    assert isinstance(prob.data, PoseGraph)
    pp = PoseGraphProblem(prob.data, PrecisionPolicy.preset("fp64", "pgo"))
    m, p = int(pp.ia.size), pp.p
    E = p * p * (int((pp.ia >= 0).sum()) + int((pp.ib >= 0).sum()))
    return {
        "m": m,
        "k": p,
        "E": E,
        "Et": 2 * m * p * p,
        "n": pp.nv * p,
        "nv": pp.nv,
        "p": p,
        "pre": "ic",
        "pattern": pp.pattern,
    }


def iteration_work(d: dict, sj: float, vb: float, sp: float, nnzb: int = 0) -> dict:
    """(flops, bytes) of one CG iteration of :func:`mixslam.linear.cgnr.pcg`, split into its parts.

    ``sj``: bytes per stored Jacobian entry; ``vb``: bytes per Krylov vector entry; ``sp``: bytes per
    preconditioner entry (block-Jacobi inverse: held in the accumulation dtype; IC factor: its storage);
    ``nnzb``: blocks of the IC factor. A flop is one multiply or one add; every array is moved once.

    * products (the fused JᵀJ·p of ``normal_matvec``): 4 E flops (J·p then Jᵀ·t); bytes: the E present
      Jacobian entries, the two index arrays (m each), p read, the output zeroed and accumulated (3 n).
    * block-Jacobi apply: 2 flops per inverse entry; its entries, r read, z written, concatenated (4 n).
    * IC apply: forward and backward substitution, 2 p² flops per off-diagonal block and p (p + 1) per
      (inverse-triangular) diagonal block each way, plus the two diagonal corrections c ∘ ·; bytes: the
      factor, its block indices and row pointers twice, b read and x touched three times (4 n), and the
      corrections (c converted from fp64, c ∘ r and c ∘ x: 8 n + 7 n vector entries).
    * vector updates: d ∘ p + JᵀJ p, three axpy (x, r, p) and three dot products: 15 n flops, 20 vector
      passes of n.

    The periodic true-residual refresh (one more product every 50 iterations) is left out.
    """
    n = d["n"]
    prod = (4.0 * d["E"], d["E"] * sj + 2.0 * d["m"] * INDEX_BYTES + 3.0 * n * vb)
    if d["pre"] == "jacobi":
        P = d["jacobi_entries"]
        pre = (2.0 * P, P * sp + 4.0 * n * vb)
    else:
        nv, p = d["nv"], d["p"]
        flops = 2.0 * (2 * p * p * (nnzb - nv) + p * (p + 1) * nv) + 2.0 * n
        nbytes = (
            2.0 * (nnzb * p * p * sp + nnzb * INDEX_BYTES + (nv + 1) * INDEX_BYTES)
            + 4.0 * n * vb
            + 8.0 * n
            + 7.0 * n * vb
        )
        pre = (flops, nbytes)
    vec = (15.0 * n, 20.0 * n * vb)
    return {"products": prod, "preconditioner": pre, "vectors": vec}


def ic_setup_work(d: dict, rb: float, sj: float, rhs32: bool) -> tuple:
    """(flops, bytes) of the once-per-linear-solve work of the IC solver outside its CG loop.

    ``rb``: bytes of a residual-precision Jacobian entry; ``sj``: of a stored entry; ``rhs32``: the policy
    computes Jᵀr in fp32 (an extra pass; the fp64 one is LM's, counted with the Jacobian). Column norms
    (2 E flops, E entries read), the fp32 right-hand side, scaling the Et stored entries into an fp64 buffer
    and storing it in the policy's format (read 8, write sj bytes: no copy in fp64), the new scale of the
    static factor (n), and the fp64 model decrease ‖J δ‖² (J converted to fp64 when it is fp32, one
    product). The IC factorization itself (once, or when CG stalls) is not counted.
    """
    E, Et, m, k, n = d["E"], d["Et"], d["m"], d["k"], d["n"]
    flops = 2.0 * E + (2.0 * E if rhs32 else 0.0) + Et + n + 2.0 * E + 2.0 * m * k + 2.0 * n
    nbytes = (
        E * rb
        + 8.0 * n
        + ((E * rb + m * k * rb + 4.0 * n) if rhs32 else 0.0)
        + Et * (rb + 8.0)
        + (Et * (8.0 + sj) if sj < 8 else 0.0)
        + 3.0 * 8.0 * n
        + (Et * (rb + 8.0) if rb < 8 else 0.0)
        + E * 8.0
        + 2.0 * m * k * 8.0
        + 8.0 * n
    )
    return flops, nbytes
