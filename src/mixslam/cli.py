"""Command line: ``mixslam pgo | ba | eval | sim | demo | bench | generate``.

A thin layer over the library: parse arguments, call the library, print, write files.

Exit codes: 0 converged (or done); 1 the optimization failed; 2 bad input (the library's message on
stderr); 3 not converged (iteration limit, stalled); 130 interrupted (SIGINT / SIGTERM). A solve
(``pgo``, ``ba``) stops at the end of the current iteration on the first signal and still writes its best
iterate; a second signal aborts at once. On 1, 3 and 130 one line on stderr says why, even with ``-q``.

A failed solve (status ``failed``, exit 1) writes no ``-o`` / ``--tum``: a pipeline must not consume a failed
answer (a file already there stays as it was); ``--report`` is still written (status ``failed`` and its
reason), and the stderr line says that no output was written. Not converged (3) and interrupted (130) solves
write their best iterate as usual.

Batch commands (``sim``, ``bench``) on the first signal stop their workers (within about two seconds, none
left behind), write a report of the tasks that finished (``sim``: ``--report``; ``bench``: REPORT.md and
report.json in ``--out``), marked ``"interrupted": true`` with how many finished of how many, say where on
stderr, and exit 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .atomic import atomic_write_text, check_folder, check_writable, special_file
from .errors import MixslamError, OutputError

log = logging.getLogger("mixslam")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_CONVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""The exit codes (see the module docstring)."""


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else (logging.INFO if verbosity >= 1 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mixslam")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)] + [handler]
    root.setLevel(level)
    root.propagate = False


def _add_robust(p: argparse.ArgumentParser, pose_graph: bool) -> None:
    what = "edge" if pose_graph else "observation"
    p.add_argument(
        "--robust",
        metavar="LOSS[:SCALE]",
        help=f"robust loss of each {what}'s whitened error: huber, cauchy, geman-mcclure, tls or tukey, with an "
        "optional scale in units of the whitened error norm (default: the 99%% chi-square quantile of the block "
        "size; 'auto' with --gnc: measured from a first GNC run's accepted edges, for files whose information "
        "matrices are underconfident), e.g. tls, cauchy:2.5 or tls:auto",
    )
    p.add_argument(
        "--gnc",
        action="store_true",
        help="graduated non-convexity on the loss (with --robust geman-mcclure or tls)",
    )
    if pose_graph:
        p.add_argument(
            "--known-inliers",
            choices=["odometry", "none"],
            default=None,
            help="edges that keep weight 1: odometry = between consecutive vertex ids (default with --gnc)",
        )


def _robust_config(args, pose_graph: bool):
    from .errors import ConfigError
    from .solve.config import RobustConfig

    known = getattr(args, "known_inliers", None)
    if args.robust is None and (args.gnc or known is not None):
        raise ConfigError("--gnc and --known-inliers need a loss: add --robust tls (or geman-mcclure)")
    return RobustConfig(args.robust, gnc=args.gnc, known_inliers=known or "auto")


def _robust_line(report) -> str:
    r = report.robust
    gnc = f", GNC {r['gnc_iterations']} iterations" if "gnc_iterations" in r else ""
    return (
        f"robust {r['loss']} (scale {r['scale']:.4g}{gnc}): {len(report.rejected_edges)} of "
        f"{len(report.edge_weights)} rejected (weight < 0.5); {r['known_inliers']} known inliers"
    )


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default="numba",
        choices=["numba", "jax"],
        help="what runs the LM iterations: numba (CPU kernels, default) or jax (CG with jacobi/none on a JAX "
        "device; pose graphs also --solver cholesky: CG preconditioned by the complete factor, built on the "
        'host, applied on the device; needs pip install "mixslam[jax]")',
    )
    p.add_argument(
        "--device",
        default=None,
        choices=["cpu", "gpu"],
        help="device of --backend jax (default: the GPU when JAX sees one, else the CPU)",
    )


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true", help="one progress line per iteration")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _fill_level(text: str):
    if text == "complete":
        return text
    try:
        level = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer or 'complete', got {text!r}") from None
    if level < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer or 'complete', got {level}")
    return level


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``mixslam pgo: error: argument --ic-fill: ... (see mixslam pgo --help)``
    and exit status 2, like every other bad input (argparse prints its whole usage block otherwise)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="mixslam", description="Mixed-precision SLAM back-end optimization.")
    ap.add_argument("--version", action="version", version=f"mixslam {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("pgo", help="optimize a pose graph (g2o or TORO file)")
    p.add_argument("input", help="pose graph file (.g2o, TORO .graph)")
    p.add_argument("-o", "--output", help="write the optimized graph (g2o format)")
    p.add_argument("--tum", help="write the optimized trajectory (TUM format, vertex index as time)")
    p.add_argument(
        "--precision",
        default="fp64",
        choices=["fp64", "fp32", "mixed", "auto", "mixed16", "fp16"],
        help="precision policy (auto: mixed's fields, the factor's format measured per problem)",
    )
    p.add_argument(
        "--solver",
        default=None,
        choices=["cholesky", "cg", "ic", "cgnr"],
        help="linear solver (default: cholesky, factored in fp64 or, for fp32/mixed, in fp32 refined to fp64; "
        "CG with IC for mixed16/fp16); 'ic' = cg + ic, 'cgnr' = cg + jacobi (earlier spellings)",
    )
    p.add_argument(
        "--preconditioner",
        default=None,
        choices=["ic", "jacobi", "none"],
        help="preconditioner of the CG solver (default ic)",
    )
    p.add_argument(
        "--init",
        default="auto",
        choices=["auto", "file", "odometry", "chordal"],
        help="initial guess (default auto: the chordal relaxation unless the file's guess has a lower cost)",
    )
    p.add_argument("--max-iterations", type=int, default=100)
    p.add_argument(
        "--no-acceleration",
        action="store_true",
        help="plain LM steps: no geodesic-acceleration correction (on by default with the direct solver)",
    )
    p.add_argument(
        "--ic-fill",
        type=_fill_level,
        default=2,
        help="fill levels of the incomplete Cholesky factor (0 = IC(0)), or 'complete'",
    )
    p.add_argument(
        "--ic-ordering",
        default="natural",
        choices=["natural", "min-degree"],
        help="elimination order of the IC factor (min-degree: the direct solver's ordering)",
    )
    p.add_argument(
        "--ic-refactor",
        default="on_stall",
        choices=["never", "on_stall", "always"],
        help="when the static IC factor is recomputed",
    )
    p.add_argument(
        "--repair-information",
        choices=["nearest", "isotropic"],
        help="repair non-positive-definite information matrices instead of refusing the file",
    )
    _add_robust(p, pose_graph=True)
    _add_backend(p)
    p.add_argument("--report", help="write a JSON report")
    _add_verbosity(p)

    b = sub.add_parser("ba", help="bundle adjustment of a BAL problem file")
    b.add_argument("input", help="BAL problem file (problem-*-pre.txt)")
    b.add_argument("-o", "--output", help="write the optimized problem (BAL format)")
    b.add_argument(
        "--precision",
        default="fp64",
        choices=["fp64", "fp32", "mixed", "auto", "mixed16", "fp16"],
        help="precision policy (mixed = auto here: fp32 residuals, the Schur solver's format measured per problem)",
    )
    b.add_argument(
        "--solver",
        default=None,
        choices=["schur", "iterative_schur", "ischur", "cg", "cgnr"],
        help="linear solver (default: schur, in fp32 + PCG or fp64 as the policy says; CG with block-Jacobi for "
        "mixed16/fp16); iterative_schur (alias ischur): PCG on the implicit reduced camera system, Jacobian "
        "stored as the policy says, for many cameras; 'cgnr' = cg (earlier spelling)",
    )
    b.add_argument(
        "--preconditioner",
        default=None,
        choices=["jacobi", "none"],
        help="preconditioner of the CG solver (default jacobi)",
    )
    b.add_argument("--max-iterations", type=int, default=100)
    b.add_argument(
        "--function-tolerance",
        type=float,
        default=1e-6,
        help="stop when a step lowers the cost by less than this fraction (Ceres' default)",
    )
    b.add_argument(
        "--fix", default="0", help="comma-separated camera indices held constant (gauge); 'none' for none (default: 0)"
    )
    _add_robust(b, pose_graph=False)
    _add_backend(b)
    b.add_argument("--report", help="write a JSON report")
    _add_verbosity(b)

    d = sub.add_parser("demo", help="the embedded default: a simulated SLAM run (VO + loop closure) in every policy")
    d.add_argument("--out", default="mixslam-demo", help="output folder")
    d.add_argument("--seed", type=int, default=0)
    _add_verbosity(d)

    m = sub.add_parser("sim", help="many seeded simulated SLAM runs, every policy on each (ATE statistics)")
    m.add_argument("--trajectories", type=int, default=10)
    m.add_argument("--keyframes", type=int, default=None, help="keyframes per run (default 300)")
    m.add_argument("--window", type=int, default=None, help="VO window in keyframes (default 50)")
    m.add_argument("--precision", default="fp64,fp32,mixed,fp16", help="comma-separated policies")
    m.add_argument("--seed", type=int, default=0, help="trajectory i uses a seed derived from this and i")
    m.add_argument("--out", help="folder for the cumulative histograms (PNG + CSV)")
    m.add_argument("--report", help="write the JSON report")
    m.add_argument("--workers", type=int, default=1, help="parallel processes")
    m.add_argument(
        "--no-wheel-odometry",
        dest="wheel_odometry",
        action="store_false",
        help="leave the wheel odometry out of the pose graph (VO odometry and loop edges only)",
    )
    m.add_argument(
        "--no-global-ba",
        dest="global_ba",
        action="store_false",
        help="skip the global bundle adjustment after loop closure (the loop-closed trajectory is "
        "then the pose graph's)",
    )
    _add_verbosity(m)
    _add_eval_parser(sub)
    _add_bench_parser(sub)
    _add_generate_parser(sub)
    _add_corrupt_parser(sub)
    return ap


def _add_bench_parser(sub) -> None:
    b = sub.add_parser("bench", help="regenerate every figure of the mixed-precision claim (PNG + CSV + REPORT.md)")
    size = b.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        dest="scale",
        const="quick",
        help="test-sized run of every figure (about a minute; checks the plumbing, not evidence)",
    )
    size.add_argument(
        "--full",
        action="store_const",
        dest="scale",
        const="full",
        help="the claim's sizes (1,703 VO trajectories, 800 PGO problems): hours on 2 cores",
    )
    b.set_defaults(scale="default")
    b.add_argument("--out", default="mixslam-bench", help="output folder (default mixslam-bench)")
    b.add_argument("--workers", type=int, default=1, help="parallel worker processes for batch figures (2, 3, 5)")
    b.add_argument(
        "--executor",
        default="process",
        choices=["process", "dask"],
        help="local process pool (default) or Dask distributed (pip install 'mixslam[distributed]')",
    )
    b.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT (default: a local Dask cluster)")
    b.add_argument("--figures", default="1,2,3,4,5,6,7,8", help="comma-separated figure numbers (default all)")
    b.add_argument("--seed", type=int, default=0, help="master seed; every task derives its own from it")
    _add_verbosity(b)


def cmd_bench(args) -> int:
    from .bench.config import FIGURES, bench_config
    from .bench.run import run_bench
    from .errors import ConfigError

    try:
        figures = tuple(int(x) for x in args.figures.split(",") if x.strip())
    except ValueError:
        figures = ()
    if not figures or any(f not in FIGURES for f in figures):
        raise ConfigError(f"--figures must be comma-separated numbers 1-8, got {args.figures!r}")
    _check_int_option("--workers", args.workers, 1)
    _check_int_option("--seed", args.seed, 0)
    check_folder(args.out, "--out")
    cfg = bench_config(
        args.scale,
        seed=args.seed,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        figures=figures,
        progress=not args.quiet,
    )
    import shlex

    command = "mixslam " + shlex.join(getattr(args, "argv", None) or ["bench"])
    from .runner import BatchInterrupted

    try:
        report = run_bench(cfg, args.out, command=command)
    except BatchInterrupted as stop:  # the workers are stopped; the report covers the finished figures
        fig = (stop.report or {}).get("interrupted_figure") or {}
        during = f" during figure {fig['number']}" if fig.get("number") is not None else ""
        if "tasks" in fig:
            during += f" ({fig['tasks_finished']} of {fig['tasks']} {fig['label']} finished)"
        files = f"{Path(args.out) / 'REPORT.md'} and {Path(args.out) / 'report.json'}"
        print(
            f"mixslam bench: interrupted{during}; {stop.done} of {stop.total} figures finished; "
            f"partial report written to {files}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not args.quiet:
        done = [f["number"] for f in report["figures"]]
        print(
            f"mixslam bench ({args.scale}): figures {done} in {report['seconds']:.0f} s; report: "
            f"{Path(args.out) / 'REPORT.md'}"
        )
        for f in report["figures"]:
            print(
                f"  {f['number']}. {f['title']}: "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(f["summary"].items())[:6]
                )
            )
    if report["failed"]:
        for k, e in report["failed"].items():
            print(f"mixslam bench: figure {k} failed: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_pgo(args) -> int:
    from .io import read_pose_graph, write_g2o, write_tum
    from .io.tum import check_distinct_timestamps
    from .linear.config import ICConfig
    from .pgo import PGOConfig, optimize_pose_graph
    from .solve.config import LMConfig
    from .solve.interrupt import handle_interrupts

    _check_output_files(("-o", args.output), ("--tum", args.tum), ("--report", args.report))  # before any work
    robust = _robust_config(args, pose_graph=True)
    graph = read_pose_graph(args.input, repair=args.repair_information)
    if args.tum:  # checked before the solve: vertex ids are the TUM timestamps
        check_distinct_timestamps(graph.ids.astype(float), f"--tum {args.tum}")
    if not args.quiet:
        print(
            f"{args.input}: {graph.num_poses} poses, {graph.num_edges} edges, {graph.dim}D"
            + ("" if graph.has_initial_guess else " (no vertices: spanning-tree guess)")
        )
    config = PGOConfig(
        precision=args.precision,
        solver=args.solver,
        preconditioner=args.preconditioner,
        init=args.init,
        lm=LMConfig(
            max_iterations=args.max_iterations,
            verbose=args.verbose,
            geodesic_acceleration=not args.no_acceleration,
        ),
        ic=ICConfig(fill_level=args.ic_fill, ordering=args.ic_ordering, refactor=args.ic_refactor),
        robust=robust,
        backend=args.backend,
        device=args.device,
    )
    with handle_interrupts():  # the first Ctrl-C ends the solve after its iteration; the best iterate is written
        result, report = optimize_pose_graph(graph, config)
    if not args.quiet:
        print(report.summary())
        if report.robust is not None:
            print(_robust_line(report))
        print(
            f"chi2 (g2o) {2 * report.initial_cost:.10g} -> {2 * report.final_cost:.10g}; "
            f"fp16 overflows {report.fp16_overflows}; compile {report.timing.get('compile', 0):.2f} s (not in total)"
            + ("" if report.backend == "numba" else f"; backend {report.backend}")
        )
    if args.output and not report.failed:  # a failed solve has no answer to hand on (see the module docstring)
        write_g2o(result, args.output)
    if args.tum and not report.failed:
        write_tum(args.tum, result.rotations, result.translations, timestamps=result.ids.astype(float))
    if args.report:
        data = report.as_dict()
        data.update(
            {
                "input": str(args.input),
                "num_poses": graph.num_poses,
                "num_edges": graph.num_edges,
                "warnings": graph.warnings,
            }
        )
        atomic_write_text(args.report, json.dumps(data, indent=2))
    return _solve_exit_code("pgo", report, (("-o", args.output), ("--tum", args.tum)), args.report)


def _parse_fix(text: str) -> tuple:
    from .errors import ConfigError

    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--fix expects comma-separated camera indices or 'none', got {text!r}") from None


def cmd_ba(args) -> int:
    from .ba import BAConfig, optimize_bundle
    from .io.bal import read_bal, write_bal
    from .solve.config import LMConfig
    from .solve.interrupt import handle_interrupts

    _check_output_files(("-o", args.output), ("--report", args.report))  # before any work
    robust = _robust_config(args, pose_graph=False)
    data = read_bal(args.input, fixed_cameras=_parse_fix(args.fix))
    if not args.quiet:
        assert data.fixed_cameras is not None  # an array since BundleData.__post_init__
        print(
            f"{args.input}: {data.num_cameras} cameras, {data.num_points} points, "
            f"{data.num_observations} observations; {int(data.fixed_cameras.sum())} camera(s) fixed"
        )
        for w in data.warnings:
            print(f"warning: {w}")
    config = BAConfig(
        precision=args.precision,
        solver=args.solver,
        preconditioner=args.preconditioner,
        lm=LMConfig(
            max_iterations=args.max_iterations,
            initial_lambda=1e-4,
            function_tolerance=args.function_tolerance,
            predict_stop=False,  # Ceres' rule, as the library's BA default (mixslam.ba)
            verbose=args.verbose,
        ),
        robust=robust,
        backend=args.backend,
        device=args.device,
    )
    with handle_interrupts():  # the first Ctrl-C ends the solve after its iteration; the best iterate is written
        result, report = optimize_bundle(data, config)
    if not args.quiet:
        print(report.summary())
        if report.robust is not None:
            print(_robust_line(report))
        depth = report.depth.final
        print(
            f"fp16 overflows {report.fp16_overflows}; observations behind the camera {depth.behind} "
            f"(depth-clamped {depth.clamped}); compile {report.timing.get('compile', 0):.2f} s (not in total)"
            + ("" if report.backend == "numba" else f"; backend {report.backend}")
        )
    if args.output and not report.failed:  # a failed solve has no answer to hand on (see the module docstring)
        write_bal(args.output, result)
    if args.report:
        out = report.as_dict()
        out.update(
            {
                "input": str(args.input),
                "num_cameras": data.num_cameras,
                "num_points": data.num_points,
                "num_observations": data.num_observations,
                "warnings": data.warnings,
            }
        )
        atomic_write_text(args.report, json.dumps(out, indent=2))
    return _solve_exit_code("ba", report, (("-o", args.output),), args.report)


def _solve_exit_code(command: str, report, results: tuple, report_path: str | None) -> int:
    """The exit code of a solve (see the module docstring). Anything but ``converged`` prints one line on
    stderr, ``-q`` or not: the status and its reason (for a failed solve also that its ``results``, the
    ``(option, path)`` pairs of -o / --tum, were not written), or where the interrupted solve's best iterate
    went."""
    from .solve.report import Status

    if report.status is Status.CONVERGED:
        return EXIT_OK
    if report.status is Status.INTERRUPTED:
        written = [str(path) for _, path in results if path] + ([str(report_path)] if report_path else [])
        where = ", ".join(written) if written else "nowhere (no output file was named)"
        print(
            f"mixslam: interrupted after {report.iterations} iterations; best iterate written to {where}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    line = f"mixslam {command}: {report.status.value}: {report.reason}"
    if report.failed:
        named = [f"{option} {path}" for option, path in results if path]
        if named:
            line += f"; no output written ({', '.join(named)}: a failed solve writes no result)"
        if report_path:
            line += f"; report written to {report_path}"
    print(line, file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_NOT_CONVERGED


def _check_int_option(option: str, value: int, least: int) -> None:
    """Options checked before any work starts (and before any worker process): one ConfigError naming them."""
    from .errors import ConfigError

    if value < least:
        raise ConfigError(f"{option} must be an integer >= {least}, got {value}")


def _check_output_files(*options: tuple[str, str | None]) -> None:
    """Every output file named on the command line is checked before any work starts (a bad ``-o`` is refused
    at once, not after the solve, and a bad ``--report`` cannot leave ``-o`` written): OutputError naming the
    option, the path and the reason. Two options naming the same file are refused (the second write would
    replace the first), except a device such as /dev/null."""
    seen: dict[str, str] = {}
    for option, path in options:
        if path:
            check_writable(path, option)
            if special_file(path) is not None:
                continue
            key = os.path.normcase(os.path.realpath(path))
            if key in seen:
                raise OutputError(f"{option} {path}", f"is the same file as {seen[key]}; give each output its own file")
            seen[key] = option


def cmd_demo(args) -> int:
    from .demo import run_demo

    _check_int_option("--seed", args.seed, 0)
    check_folder(args.out, "--out")
    return run_demo(out=args.out, seed=args.seed, quiet=args.quiet, verbose=args.verbose)


def cmd_sim(args) -> int:
    from .demo import format_ate_table
    from .errors import ConfigError
    from .precision import PRESETS
    from .slam.study import StudyConfig, run_study, with_overrides

    policies = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    bad = [p for p in policies if p not in PRESETS["ba"]]
    if bad or not policies:
        raise ConfigError(
            f"--precision: unknown precision(s) {bad or args.precision!r}; expected a comma-separated "
            f"list of {sorted(PRESETS['ba'])}"
        )
    _check_int_option("--trajectories", args.trajectories, 1)
    _check_int_option("--workers", args.workers, 1)
    _check_int_option("--seed", args.seed, 0)
    if args.out:
        check_folder(args.out, "--out")
    _check_output_files(("--report", args.report))
    cfg = with_overrides(StudyConfig(), wheel_odometry=args.wheel_odometry, global_ba=args.global_ba)
    for option, name in (("--keyframes", "keyframes"), ("--window", "window")):
        value = getattr(args, name)
        try:
            cfg = with_overrides(cfg, **{name: value})
        except ConfigError as exc:  # the config's rule, prefixed with the option that broke it
            raise ConfigError(f"{option} {value}: {exc}") from None
    if not args.quiet:
        print(
            f"mixslam sim: {args.trajectories} trajectories x {len(policies)} policies, "
            f"{cfg.trajectory.keyframes} keyframes, window {cfg.pipeline.vo.window}, seed {args.seed}, "
            f"{args.workers} worker(s)"
        )
    from .runner import BatchInterrupted

    try:
        report = run_study(args.trajectories, args.seed, policies, cfg, args.workers, progress=not args.quiet)
    except BatchInterrupted as stop:  # the workers are stopped; the finished trajectories are reported
        where = "nothing written (no --report named)"
        if args.report and stop.report is not None:
            atomic_write_text(args.report, json.dumps(stop.report, indent=2))
            where = f"partial report (interrupted: true) written to {args.report}"
        print(f"mixslam sim: interrupted after {stop.done} of {stop.total} trajectories; {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = Path(args.out) if args.out else None
    if out is not None:
        from .slam import plots

        out.mkdir(parents=True, exist_ok=True)
        for stage, label in (("vo", "VO (no loop closure)"), ("pgo", "pose graph only"), ("lc", "after loop closure")):
            values = {p: [t[f"ate_{stage}_rmse"] for t in report["policies"][p]["trajectories"]] for p in policies}
            plots.plot_cumulative_histograms(
                out / f"ate_{stage}_cdf.png",
                values,
                xlabel="ATE RMSE [m]",
                title=f"Cumulative ATE histogram, {label}, {args.trajectories} trajectories",
            )
            plots.write_cumulative_csv(out / f"ate_{stage}_cdf.csv", values)
    if args.report:
        atomic_write_text(args.report, json.dumps(report, indent=2))
    if not args.quiet:
        print(format_ate_table(report, policies))
        for p in policies:
            d = report["policies"][p]
            vo, pg, lc = (d[f"ate_{s}"]["mean"] for s in ("vo", "pgo", "lc"))
            print(
                f"  {p}: mean ATE VO {vo:.3e} -> pose graph {pg:.3e} -> global BA {lc:.3e} m "
                f"(loop closure lowers it {vo / lc:.1f}x)"
            )
            w = d.get("vo_window_time_s")
            if w:
                print(
                    f"  {p}: VO window solve median {1e3 * w['median']:.1f} ms, p99 {1e3 * w['p99']:.1f} ms, "
                    f"max {1e3 * w['max']:.1f} ms; {w['over_budget']} of {w['count']} over {1e3 * w['budget']:.0f} ms"
                )
            for stage in ("vo", "pgo", "lc"):
                r = d.get(f"ratio_to_fp64_{stage}")
                if r:
                    print(
                        f"  {p} / fp64 ATE RMSE ({stage.upper()}): median {r['median']:.4f}, max {r['max']:.4f}, "
                        f"trajectories worse by > 5%: {r['worse_than_5pct']}"
                    )
        if out is not None:
            print(f"histograms (PNG + CSV) written to {out}/")
    return 0


def _add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="ATE / RPE of an estimated TUM trajectory against a reference TUM trajectory")
    e.add_argument("reference", help="reference (ground truth) trajectory, TUM format")
    e.add_argument("estimate", help="estimated trajectory, TUM format")
    e.add_argument(
        "--align",
        default="se3",
        choices=["se3", "sim3", "none"],
        help="align the estimate onto the reference first: rigid, rigid + scale, or not (default se3)",
    )
    e.add_argument(
        "--max-difference",
        type=float,
        default=0.02,
        help="largest timestamp difference (s) for two poses to be matched (default 0.02)",
    )
    e.add_argument("--json", help="write the statistics as JSON")


def cmd_eval(args) -> int:
    import math

    from .errors import ConfigError
    from .eval import STAT_KEYS, evaluate_files

    if not (math.isfinite(args.max_difference) and args.max_difference >= 0):
        raise ConfigError(f"--max-difference must be a finite number >= 0 (seconds), got {args.max_difference}")
    _check_output_files(("--json", args.json))
    res = evaluate_files(args.reference, args.estimate, align=args.align, max_difference=args.max_difference)
    a = res["alignment"]
    print(
        f"{args.estimate} vs {args.reference}: {res['matched']} matched poses (reference "
        f"{res['reference_poses']}, estimate {res['estimated_poses']}); alignment {a['mode']}, "
        f"scale {a['scale']:.6g}"
    )
    cols = [
        ("ATE [m]", "ate"),
        ("ATE [deg]", "ate_rot_deg"),
        (f"RPE [m] (d={res['delta']})", "rpe_trans"),
        (f"RPE [deg] (d={res['delta']})", "rpe_rot_deg"),
    ]
    print(f"{'':8}" + "".join(f"{name:>20}" for name, _ in cols))
    for k in STAT_KEYS:
        cells = (f"{res[key][k]:>20d}" if k == "n" else f"{res[key][k]:>20.6g}" for _, key in cols)
        print(f"{k:8}" + "".join(cells))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=2))
    return 0


_TRUTH_RULE = (
    "The ground truth is written beside OUT in the same format: '.truth' goes before OUT's last suffix "
    "(problem.txt -> problem.truth.txt, graph.g2o -> graph.truth.g2o, out -> out.truth). The same seed writes "
    "byte-identical files."
)


def _add_generate_parser(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="write a seeded synthetic problem (BAL or g2o) and its ground truth beside it",
        description="Write a seeded synthetic problem and its ground truth. " + _TRUTH_RULE,
    )
    kinds = g.add_subparsers(dest="problem", required=True, parser_class=_Parser)
    b = kinds.add_parser(
        "ba",
        help="bundle adjustment: cameras on a ring around a point cloud (BAL format)",
        description="A BAL problem: CAMERAS cameras on a 10 m ring looking at POINTS points in a 4 m ball, each "
        "point seen by --min-views..--max-views cameras (mean 5 by default: 2,000 cameras and 1,000,000 points "
        "give about 5 million observations), noisy pixels; OUT holds the perturbed initial guess, OUT.truth "
        "the true cameras and points with the same observations. " + _TRUTH_RULE,
    )
    b.add_argument("output", metavar="OUT", help="BAL file to write (the initial guess), e.g. problem.txt")
    b.add_argument("--cameras", type=int, required=True, help="number of cameras (>= 2 and >= --max-views)")
    b.add_argument("--points", type=int, required=True, help="number of points (>= 1)")
    b.add_argument("--seed", type=int, default=0, help="random seed (>= 0; default 0)")
    b.add_argument("--min-views", type=int, default=3, help="fewest cameras observing a point (>= 2; default 3)")
    b.add_argument("--max-views", type=int, default=7, help="most cameras observing a point (default 7)")
    b.add_argument("--pixel-sigma", type=float, default=1.0, help="pixel noise, px per coordinate (default 1)")
    b.add_argument(
        "--rotation-noise", type=float, default=0.01, help="initial guess: camera rotation error, rad (default 0.01)"
    )
    b.add_argument(
        "--translation-noise", type=float, default=0.05, help="initial guess: camera centre error, m (default 0.05)"
    )
    b.add_argument("--point-noise", type=float, default=0.05, help="initial guess: point error, m (default 0.05)")
    b.add_argument("--focal", type=float, default=500.0, help="true focal length, px (default 500)")
    b.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    p = kinds.add_parser(
        "pgo",
        help="pose graph with loop closures: grid2d, grid3d, sphere or city (g2o format)",
        description="A pose graph with odometry and loop closures (grid2d: 2D Manhattan-world walk, loop closures "
        "at revisits kept with probability 0.5; city: the same world with every revisit closed; grid3d: the 3D "
        "lattice walk; sphere: g2o's sphere, one closure per pose to the ring below). OUT holds the "
        "odometry-composed initial guess, OUT.truth the true poses with the same edges. " + _TRUTH_RULE,
    )
    p.add_argument("output", metavar="OUT", help="g2o file to write (the initial guess), e.g. graph.g2o")
    p.add_argument("--poses", type=int, required=True, help="number of poses (>= 2)")
    p.add_argument("--kind", required=True, choices=["grid2d", "grid3d", "sphere", "city"], help="the world")
    p.add_argument("--seed", type=int, default=0, help="random seed (>= 0; default 0)")
    p.add_argument("--translation-sigma", type=float, default=0.05, help="measurement noise, m per axis (default 0.05)")
    p.add_argument("--rotation-sigma", type=float, default=0.01, help="measurement noise, rad per axis (default 0.01)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def cmd_generate(args) -> int:
    import math
    import time
    from functools import partial

    from .errors import ConfigError
    from .sim.generate import truth_path

    truth = truth_path(args.output)
    _check_int_option("--seed", args.seed, 0)
    if args.problem == "ba":
        _check_int_option("--cameras", args.cameras, 2)
        _check_int_option("--points", args.points, 1)
        options = {
            "min_views": "--min-views",
            "max_views": "--max-views",
            "pixel_sigma": "--pixel-sigma",
            "rotation_noise": "--rotation-noise",
            "translation_noise": "--translation-noise",
            "point_noise": "--point-noise",
            "focal": "--focal",
        }
    else:
        _check_int_option("--poses", args.poses, 2)
        options = {"translation_sigma": "--translation-sigma", "rotation_sigma": "--rotation-sigma"}
    values = {name: getattr(args, name) for name in options}
    for name, value in values.items():
        if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{options[name]} must be a finite number >= 0, got {value}")
    _check_output_files(("OUT", args.output), ("truth file", str(truth)))  # before any work
    t0 = time.perf_counter()
    if args.problem == "ba":
        from .io.bal import write_bal
        from .sim.generate import BundleGenConfig, generate_bundle

        try:
            config = BundleGenConfig(**values)
        except ConfigError as exc:  # the config's rule, prefixed with the options it names
            named = [f"{option} {values[name]}" for name, option in options.items() if f".{name} " in str(exc)]
            raise ConfigError(f"{', '.join(named) or 'options'}: {exc}") from None
        if args.cameras < config.max_views:
            raise ConfigError(
                f"--cameras {args.cameras}: fewer cameras than --max-views {config.max_views}; each point is seen "
                f"by up to {config.max_views} distinct cameras: give --cameras >= {config.max_views} or lower "
                "--max-views (and --min-views)"
            )
        bundle, bundle_truth = generate_bundle(args.cameras, args.points, args.seed, config)
        what = f"{bundle.num_cameras} cameras, {bundle.num_points} points, {bundle.num_observations} observations"
        writes = [partial(write_bal, args.output, bundle), partial(write_bal, truth, bundle_truth)]
    else:
        from .io import write_g2o
        from .sim.generate import generate_pose_graph

        graph, graph_truth = generate_pose_graph(args.kind, args.poses, args.seed, **values)
        loops = graph.num_edges - (graph.num_poses - 1)
        what = (
            f"{args.kind} pose graph, {graph.num_poses} poses ({graph.dim}D), {graph.num_edges} edges "
            f"({loops} loop closures)"
        )
        writes = [partial(write_g2o, graph, args.output), partial(write_g2o, graph_truth, truth)]
    t1 = time.perf_counter()
    writes[0]()
    try:
        writes[1]()
    except BaseException:  # never leave a new problem beside an old (or no) truth
        if special_file(args.output) is None:
            Path(args.output).unlink(missing_ok=True)
        raise
    t2 = time.perf_counter()
    if not args.quiet:
        print(
            f"mixslam generate {args.problem}: {what}, seed {args.seed}: generated in {t1 - t0:.1f} s; wrote "
            f"{args.output} (initial guess) and {truth} (ground truth) in {t2 - t1:.1f} s"
        )
    return EXIT_OK


_CORRUPT_RULE = (
    "--outliers is a fraction in (0, 1), the share of outliers among OUT's loop closures (added = round(f * L / "
    "(1 - f)), L the input's loop closures: edges whose vertex ids are not consecutive), or a count (an integer "
    ">= 1); a value containing '.' or below 1 is a fraction. The record of the added edges goes beside OUT: "
    "'.outliers.json' replaces OUT's last suffix (bad.g2o -> bad.outliers.json). The same seed writes "
    "byte-identical files."
)


def _add_corrupt_parser(sub) -> None:
    c = sub.add_parser(
        "corrupt",
        help="add false loop closures (outliers) to a pose graph, as Vertigo's generator (g2o format)",
        description="Append false loop closures to a pose graph (Vertigo's outlier modes): random pose pairs, "
        "local pairs (2 to 20 poses apart) or groups of --group-size consecutive edges sharing one wrong "
        "transform; each with a random rotation, a translation in the trajectory's bounding box and the "
        "information of the file's median loop closure. The input's edges stay unchanged and first. " + _CORRUPT_RULE,
    )
    c.add_argument("input", metavar="IN", help="pose graph file (.g2o, TORO .graph)")
    c.add_argument("-o", "--output", metavar="OUT", required=True, help="g2o file to write (not IN), e.g. bad.g2o")
    c.add_argument(
        "--outliers",
        required=True,
        metavar="FRACTION|COUNT",
        help="share of outliers among OUT's loop closures (0.2) or number of edges to add (50)",
    )
    c.add_argument(
        "--mode",
        default="random",
        choices=["random", "local", "group"],
        help="which poses the outliers join (default random)",
    )
    c.add_argument("--group-size", type=int, default=10, help="outliers per group in --mode group (>= 1; default 10)")
    c.add_argument("--seed", type=int, default=0, help="random seed (>= 0; default 0)")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def cmd_corrupt(args) -> int:
    from .io import read_pose_graph, write_g2o
    from .sim.corrupt import corrupt_pose_graph, loop_closure_mask, num_outliers, parse_outliers, sidecar_path

    outliers = parse_outliers(args.outliers, "--outliers")
    _check_int_option("--group-size", args.group_size, 1)
    _check_int_option("--seed", args.seed, 0)
    sidecar = sidecar_path(args.output)
    for option, path in (("-o", args.output), ("sidecar", str(sidecar))):
        if os.path.realpath(path) == os.path.realpath(args.input):  # the clean graph is never replaced
            raise OutputError(f"{option} {path}", f"is the input file {args.input}; write to another file")
    _check_output_files(("-o", args.output), ("sidecar", str(sidecar)))  # before any work
    graph = read_pose_graph(args.input)
    num_loops = int(loop_closure_mask(graph).sum())
    num_outliers(outliers, num_loops, name="--outliers", source=str(args.input))  # the option named in errors
    corrupted, added = corrupt_pose_graph(graph, outliers, args.mode, args.group_size, args.seed)
    record = {
        "source": str(args.input),
        "output": str(args.output),
        "mode": args.mode,
        "outliers_requested": outliers,
        "seed": args.seed,
        "group_size": args.group_size,
        "num_edges_input": graph.num_edges,
        "num_loop_closures_input": num_loops,
        "num_added": int(added.size),
        "added_edges": added.tolist(),
    }
    write_g2o(corrupted, args.output)
    try:
        atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
    except BaseException:  # never leave a corrupted graph beside a stale (or no) record of its outliers
        if special_file(args.output) is None:
            Path(args.output).unlink(missing_ok=True)
        raise
    if not args.quiet:
        total = num_loops + added.size
        share = added.size / total if total else 0.0
        group = f" in groups of {args.group_size}" if args.mode == "group" else ""
        print(
            f"mixslam corrupt: added {added.size} {args.mode} false loop closures{group} (seed {args.seed}) to "
            f"{args.input} ({graph.num_edges} edges, {num_loops} loop closures): {share:.1%} of OUT's {total} "
            f"loop closures are outliers; wrote {args.output} and {sidecar}"
        )
    return EXIT_OK


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging(-1 if getattr(args, "quiet", False) else (1 if getattr(args, "verbose", False) else 0))
    from .solve.interrupt import sigterm_as_keyboard_interrupt

    try:
        with sigterm_as_keyboard_interrupt():
            return _dispatch(args)
    except KeyboardInterrupt:
        # Ctrl-C outside a solve's own handling (reading, a batch command, a second Ctrl-C): batch work is
        # cancelled and its workers ended by the task runner; one line, no traceback.
        print(f"mixslam: interrupted ({args.command}); nothing more written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MixslamError, OSError) as exc:
        # Bad input (every library error is a MixslamError; a file that cannot be read or written): exit 2
        # with one line, never a traceback (also for errors re-raised from worker processes, whose remote
        # traceback rides along as the cause). Anything else is a bug and keeps its traceback.
        log.debug("mixslam: error", exc_info=True)
        print(f"mixslam: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _dispatch(args) -> int:
    commands = {
        "pgo": cmd_pgo,
        "ba": cmd_ba,
        "sim": cmd_sim,
        "demo": cmd_demo,
        "eval": cmd_eval,
        "bench": cmd_bench,
        "generate": cmd_generate,
        "corrupt": cmd_corrupt,
    }
    command = commands.get(args.command)
    return EXIT_BAD_INPUT if command is None else command(args)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (its class name when it has none)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
