"""Whole-solve rows of benchmarks/ba.py (final cost, LM and CG iterations, status) for the before/after check.

    python docs/results/solve_path_check/ba_cmp.py OUT.csv      # data from $MIXSLAM_DATA/ba or ../shared/data/ba
"""
import csv
import sys

from mixslam.ba import optimize_bundle, warmup
from mixslam.data import data_dir
from mixslam.io.bal import read_bal
from mixslam.solve import LMConfig
from mixslam.sim.bundle import WindowConfig, simulate_window
FILES = ["bal-ladybug-problem-49-7776-pre-shrink-1800.txt", "problem-16-22106-pre.txt", "problem-49-7776-pre.txt",
         "dubrovnik-1-1-pre.txt", "dubrovnik-3-7-pre.txt", "dubrovnik-3-7-18-pre.txt"]
PAIRS = [("fp64", "schur"), ("fp64", "cgnr"), ("fp32", "cgnr"), ("mixed", "cgnr"), ("fp16", "cgnr")]
lm = LMConfig(initial_lambda=1e-4, function_tolerance=1e-6, max_iterations=100)
probs = [(f, read_bal(data_dir() / "ba" / f)) for f in FILES]
probs.append(("window-seed0", simulate_window(WindowConfig(), seed=0).data))
warmup("bal"); warmup("pinhole")
w = csv.writer(open(sys.argv[1], "w"))
w.writerow(["problem", "precision", "solver", "final_cost", "lm_iterations", "cg_iterations", "status", "total_s"])
for name, d in probs:
    for p, s in PAIRS:
        try:
            _, rep = optimize_bundle(d, precision=p, solver=s, lm=lm)
            w.writerow([name, p, s, repr(rep.final_cost), rep.iterations, rep.linear_iterations, rep.status.value, rep.timing["total"]])
        except Exception as e:
            w.writerow([name, p, s, "ERR " + type(e).__name__, "", "", str(e)[:80], ""])
        print(name, p, s, flush=True)
