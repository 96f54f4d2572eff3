"""Compare two result CSVs of ``benchmarks/pgo.py`` or ``benchmarks/ba.py`` (before / after a change), row by row.

A row is the same result when its final cost agrees to ``--rtol`` (relative; default 1e-10, the fp64 bar of a
change that must not change results), its LM and CG iteration counts are equal and its status is the same.
Times are not compared (these machines are noisy). Exit status 1 when any row differs or is missing.

    python benchmarks/pgo.py --no-peers --csv before.csv        # on the old code
    python benchmarks/pgo.py --no-peers --csv after.csv         # on the new code
    python benchmarks/compare_results.py before.csv after.csv
"""
from __future__ import annotations

import argparse
import csv
import sys


def load(path: str) -> tuple[dict, str, str]:
    """{(problem, precision, solver): row}, the problem column and the cost column of a pgo.py / ba.py CSV."""
    rows = list(csv.DictReader(open(path, newline="")))
    if not rows:
        raise SystemExit(f"{path}: no rows")
    problem, cost = ("file", "chi2") if "chi2" in rows[0] else ("problem", "final_cost")
    out = {}
    for r in rows:
        if r.get("row", "solve") != "solve" or not r.get(cost) or r.get("solver") in ("LM", None):
            continue  # summary rows and the peers (GTSAM, g2o) are not ours to compare
        out[(r[problem], r["precision"], r["solver"])] = r
    return out, problem, cost


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rtol", type=float, default=1e-10, help="largest relative final-cost difference (1e-10)")
    args = ap.parse_args(argv)
    before, _, cost = load(args.before)
    after, _, _ = load(args.after)
    same = 0
    worst = 0.0
    for key, b in before.items():
        a = after.get(key)
        if a is None:
            print(f"MISSING {' '.join(key)}")
            continue
        cb, ca = float(b[cost]), float(a[cost])
        rel = abs(ca - cb) / max(abs(cb), 1e-300)
        worst = max(worst, rel)
        its_b = (int(b["lm_iterations"]), int(b["cg_iterations"]))
        its_a = (int(a["lm_iterations"]), int(a["cg_iterations"]))
        ok = rel <= args.rtol and its_a == its_b and a["status"] == b["status"]
        same += ok
        print(f"{'same' if ok else 'DIFF'} {' '.join(key):62s} cost rel {rel:8.1e}  LM/CG {its_b} -> {its_a}  "
              f"{b['status']} -> {a['status']}")
    print(f"{same}/{len(before)} rows the same (final cost within {args.rtol:g} relative, same LM and CG "
          f"iterations, same status); largest relative cost difference {worst:.1e}")
    return 0 if same == len(before) else 1


if __name__ == "__main__":
    sys.exit(main())
