"""Roofline of this machine, measured with numba kernels: streaming bandwidth and fused multiply-add throughput.

Bandwidth: ``read`` (``s += a[i]``) and ``triad`` (``a[i] = b[i] + s * c[i]``) in fp64 and fp32, compiled with
``njit(fastmath=True)``, over working sets chosen from the cache sizes in ``/sys/devices/system/cpu/cpu0/cache``
(``lscpu -C`` as a fallback) so that they sit in L2 (half of L2 per core), L3 (8 x L2 per core, at most L3/8)
and memory (4 x L3 in all, at least 512 MiB). GB/s counts the bytes the loop reads and writes: ``read`` one
element, ``triad`` three (two read, one written). The write-allocate read of ``a`` (the cache line is fetched
before it is written: LLVM emits ordinary stores, not streaming ones) is NOT counted, so from memory the real
triad traffic is 4/3 of the figure. The repetitions run inside the compiled kernel (the reduction is carried
across them, so nothing is loop-invariant; the time was checked to scale with the repetition count).

FMA throughput: ``fma`` is 16 independent chains ``x = fma(x, a, b)``, each one full AVX-512 register (8 fp64 /
16 fp32 lanes), emitted as LLVM vector IR (``llvm.fma.v8f64`` / ``llvm.fma.v16f32`` through
``numba.extending.intrinsic``, as ``mixslam.kernels.simd`` does) so the accumulators live in zmm registers. One
chain of the same kernel (``fma chain``) is latency bound; assuming the 4-cycle FMA latency of Golden/Raptor Cove
cores it gives the core clock that the peak is computed at (the VM's nominal 2.1 GHz understates a turbo clock).
Peak = FMA units x lanes x 2 flops x clock, with 2 FMA units per core ASSUMED (Sapphire/Emerald Rapids Xeon:
ports 0+1 fused and port 5, both 512 bits wide). ``fma loop`` is the same arithmetic written as a plain numba
loop over a 256-element array in L1 (``v = x[i]``, eight ``v = v * a + b``, ``x[i] = v``, repeated; with one FMA
per load and store the loop is load/store bound at ~12% of peak): what numba's loop vectorizer gives.

Checked during development (and printed under "vector code" each run, from ``inspect_asm``): numba targets the
host CPU (llvmlite reports emeraldrapids) but LLVM's tuning for it prefers 256-bit vectors, so the loop
vectorizer emits ymm code for ``read`` / ``triad`` / ``fma loop`` (the read loop: four ymm accumulators,
vaddpd/vaddps with a memory operand, thanks to fastmath; triad: vfmadd213pd/ps on ymm; numba does not run the SLP
vectorizer). The explicit v8f64 / v16f32 IR is legalized to zmm (512-bit types are legal with avx512f) and does
reach the 2-FMA/cycle roof, so a plain numba loop's compute ceiling is half the peak. Compiling with
``NUMBA_CPU_FEATURES=<host features>,-prefer-256-bit`` (zmm loops) doubled the read rate from L1 but left L2 and
L3 about where they are, so the ymm bandwidth roofs below hold for L2 and beyond.

Two cores: two Python threads, each pinned to its own CPU and calling the same ``nogil`` compiled kernel (the
machine code of the one-core rows) on its own arrays; they start together at a barrier and the time is from the
first start to the last end. Every figure is the best of N short samples (one core: about 10 ms each, 60 of them;
two cores: 3 ms, 180; memory: one sweep, 10 / 20), the median beside it: the machine is a small VM shared with
other jobs, and a best sample is one that no other job interrupted. The load average at start and end is printed;
two-core rows (which need both cpus free at once) and the medians suffer most.

    python benchmarks/roofline.py [--quick] [--json PATH]

Other benchmarks import it to print their rates as fractions of these roofs::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from roofline import fraction
    print(fraction(bytes_per_s=nbytes / t, level="L3", cores=1, precision="fp32"))
    # 12.3 GB/s = 50% of L3 read (1 core)

``fraction`` reads the roofs from the file named by $MIXSLAM_ROOFLINE (a ``--json`` file or a saved output), else
from the ``ROOFLINE = {...}`` at the end of docs/results/roofline.txt, else measures them (``roofline(quick=True)``,
about 10 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["roofline", "fraction", "load", "ROOFLINE"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
RESULTS_TXT = Path(__file__).resolve().parent.parent / "docs" / "results" / "roofline.txt"
FMA_UNITS = 2  # assumed FMA units per core (Sapphire / Emerald Rapids: ports 0+1 fused and 5, 512-bit each)
FMA_LATENCY = 4  # cycles, vfmadd on zmm (Golden / Raptor Cove); turns the one-chain rate into a clock
N_CHAINS = 16  # independent zmm accumulators of the fma kernel (latency 4 x 2 units = 8 needed)
FMA_LOOP_N = 256  # elements of the fma loop's L1 array
PRECISIONS = {"fp64": np.float64, "fp32": np.float32}
LEVELS = ("L2", "L3", "mem")

ROOFLINE: dict | None = None  # the last roofs measured or loaded in this process


# ---------------------------------------------------------------------------------------------- machine


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(text)
    return int(float(m.group(1)) * {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()])


def cache_sizes() -> dict[str, int]:
    """Per-instance data cache sizes in bytes, {"L1d", "L2", "L3"}: sysfs, else ``lscpu -C``, else guesses."""
    sizes: dict[str, int] = {}
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            if (d / "type").read_text().strip() == "Instruction":
                continue
            sizes["L1d" if level == "1" else f"L{level}"] = _parse_size((d / "size").read_text())
        except (OSError, ValueError):
            continue
    if not sizes:
        try:
            out = subprocess.run(["lscpu", "-C", "-B"], capture_output=True, text=True, timeout=10).stdout
            for line in out.splitlines()[1:]:
                f = line.split()
                if len(f) >= 2 and f[0] in ("L1d", "L2", "L3"):
                    sizes[f[0]] = int(f[1])
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    for name, guess in (("L1d", 32 * KiB), ("L2", 1 * MiB), ("L3", 32 * MiB)):
        sizes.setdefault(name, guess)
    return sizes


def machine() -> dict:
    """CPU model and the flags that matter here, cache sizes, cores, memory, library versions."""
    info: dict = {"cpu": platform.processor() or "?", "family_model": None, "llvm_cpu": None, "nominal_mhz": None}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name":
                info["cpu"] = val
            elif key == "cpu family":
                fam = val
            elif key == "model" and info["family_model"] is None:
                info["family_model"] = f"{fam}/{val}"
            elif key == "cpu MHz" and info["nominal_mhz"] is None:
                info["nominal_mhz"] = float(val)
            elif key == "flags":
                flags = set(val.split())
                break
    except (OSError, ValueError, NameError):
        pass
    try:
        import llvmlite.binding as llvm

        info["llvm_cpu"] = llvm.get_host_cpu_name()
    except Exception:  # pragma: no cover - informative only
        pass
    info["flags"] = {f: f in flags for f in ("fma", "avx2", "avx512f", "avx512_fp16", "f16c")}
    info["caches"] = cache_sizes()
    info["cpus"] = len(os.sched_getaffinity(0))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(("MemTotal", "MemAvailable")):
                info[line.split(":")[0]] = int(line.split()[1]) * KiB
    except (OSError, ValueError, IndexError):
        pass
    info["versions"] = {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__}
    return info


def choose_sizes(caches: dict[str, int], quick: bool, mem_available: int | None = None) -> dict[str, int]:
    """Working sets in bytes: L2 and L3 per core, mem over all cores together (the L3 is shared)."""
    l2, l3 = caches["L2"], caches["L3"]
    mem = max(4 * l3, 512 * MiB) if not quick else max(2 * l3, 256 * MiB)
    if mem_available:
        mem = min(mem, mem_available // 4)
    return {"L2": l2 // 2, "L3": min(8 * l2, l3 // 8), "mem": mem}


# ---------------------------------------------------------------------------------------------- kernels


@intrinsic
def _fma_chains(typingctx, x, a, b, n, chains):
    """``x[k] = fma(x[k], a, b)`` n times for ``len(chains)`` zmm-wide chains held in registers. njit only."""
    if not (
        isinstance(x, types.Array)
        and x.ndim == 1
        and x.layout == "C"
        and x.dtype in (types.float32, types.float64)
        and isinstance(n, types.Integer)
        and isinstance(chains, types.UniTuple)
    ):
        return None
    count = chains.count

    def codegen(context, builder, sig, args):
        dt = sig.args[0].dtype
        bits = 32 if dt == types.float32 else 64
        w = 512 // bits
        fty = context.get_value_type(dt)
        vty = ir.VectorType(fty, w)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{w}f{bits}")
        undef = ir.Constant(vty, ir.Undefined)
        mask = ir.Constant(ir.VectorType(i32, w), [0] * w)

        def splat(value, ty):
            s = context.cast(builder, value, ty, dt)
            return builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, mask)

        va, vb = splat(args[1], sig.args[1]), splat(args[2], sig.args[2])
        base = builder.bitcast(context.make_array(sig.args[0])(context, builder, args[0]).data, vty.as_pointer())
        align = fty.get_abi_alignment(context.target_data)
        slots = []
        for k in range(count):
            p = builder.gep(base, [ir.Constant(i64, k)])
            s = cgutils.alloca_once(builder, vty)  # entry-block alloca: promoted to a register by mem2reg
            builder.store(builder.load(p, align=align), s)
            slots.append((p, s))
        with cgutils.for_range(builder, context.cast(builder, args[3], sig.args[3], types.int64)):
            for _, s in slots:
                builder.store(builder.call(fma, [builder.load(s), va, vb]), s)
        for p, s in slots:
            builder.store(builder.load(s), p, align=align)
        return context.get_dummy_value()

    return types.void(x, a, b, n, chains), codegen


_KERNELS: dict[tuple[str, str], object] = {}


def kernel(name: str, precision: str):
    """The compiled kernel ``name`` (read, triad, fma, fma chain, fma loop) for one precision, made once."""
    key = (name, precision)
    if key in _KERNELS:
        return _KERNELS[key]
    zero = PRECISIONS[precision](0)

    if name == "read":

        @njit(fastmath=True, nogil=True)
        def k(a, reps):
            s = zero
            for _ in range(reps):
                for i in range(a.size):
                    s += a[i]
            return s

    elif name == "triad":

        @njit(fastmath=True, nogil=True)
        def k(a, b, c, s, reps):
            for _ in range(reps):
                for i in range(a.size):
                    a[i] = b[i] + s * c[i]

    elif name == "fma loop":

        @njit(fastmath=True, nogil=True)
        def k(x, a, b, reps):
            for _ in range(reps):
                for i in range(x.size):
                    v = x[i]  # 8 dependent FMAs a load and store: vectorized across i, interleaved by LLVM
                    v = v * a + b
                    v = v * a + b
                    v = v * a + b
                    v = v * a + b
                    v = v * a + b
                    v = v * a + b
                    v = v * a + b
                    v = v * a + b
                    x[i] = v

    elif name in ("fma", "fma chain"):
        chains = (0,) * (N_CHAINS if name == "fma" else 1)

        @njit(nogil=True)
        def k(x, a, b, reps):
            _fma_chains(x, a, b, reps, chains)

    else:
        raise ValueError(name)
    _KERNELS[key] = k
    return k


def _lanes(precision: str) -> int:
    return 512 // (64 if precision == "fp64" else 32)


def _setup(name: str, precision: str, nbytes: int):
    """(arrays + scalars before ``reps``, work per rep: bytes or flops) for one thread of ``nbytes``."""
    dt = PRECISIONS[precision]
    item = np.dtype(dt).itemsize
    if name == "read":
        n = max(64, nbytes // item)
        return (np.full(n, 0.5, dt),), n * item
    if name == "triad":
        n = max(64, nbytes // (3 * item))
        return (np.zeros(n, dt), np.full(n, 0.5, dt), np.full(n, 0.25, dt), dt(1.5)), 3 * n * item
    if name == "fma loop":
        return (np.ones(FMA_LOOP_N, dt), dt(0.75), dt(0.25)), 2 * 8 * FMA_LOOP_N
    chains = N_CHAINS if name == "fma" else 1
    # fixed point 1: a = 0.75, b = 0.25 keep every value normal (no denormal slow path)
    return (np.ones(chains * _lanes(precision), dt), dt(0.75), dt(0.25)), 2 * chains * _lanes(precision)


def _timed(fn, per_thread: list[tuple], pin: list[int] | None) -> float:
    """Seconds from the first thread's start to the last one's end (one thread: a plain call)."""
    if len(per_thread) == 1:
        t = time.perf_counter()
        fn(*per_thread[0])
        return time.perf_counter() - t
    barrier = threading.Barrier(len(per_thread))
    starts = [0.0] * len(per_thread)
    ends = [0.0] * len(per_thread)

    def work(k):
        if pin:
            try:
                os.sched_setaffinity(0, {pin[k % len(pin)]})  # 0: this thread
            except OSError:
                pass
        barrier.wait()
        starts[k] = time.perf_counter()
        fn(*per_thread[k])
        ends[k] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(per_thread))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(ends) - min(starts)


def measure(name: str, precision: str, nbytes: int, cores: int, target_s: float, samples: int) -> dict:
    """Best and median rate (bytes/s or flop/s) of ``kernel(name, precision)`` on ``cores`` threads."""
    fn = kernel(name, precision)
    setups = [_setup(name, precision, nbytes) for _ in range(cores)]
    work = setups[0][1]
    fn(*setups[0][0], 1)  # compile, warm the caches
    if name in ("fma", "fma chain"):
        reps = 1 << 16
    elif name == "fma loop":
        reps = 1 << 10
    else:
        reps = 1
    t = min(_timed(fn, [(*setups[0][0], reps)], None) for _ in range(3))
    reps = max(1, math.ceil(reps * target_s / max(t, 1e-7)))
    cpus = sorted(os.sched_getaffinity(0))
    pin = cpus if cores > 1 and len(cpus) >= cores else None
    rates = [cores * work * reps / _timed(fn, [(*s[0], reps) for s in setups], pin) for _ in range(samples)]
    return {"best": max(rates), "median": statistics.median(rates), "reps": reps, "samples": samples}


def vector_code() -> dict[str, str]:
    """Widest register and packed instructions of each compiled kernel's arithmetic, from ``inspect_asm``."""
    out = {}
    for name in ("read", "triad", "fma loop", "fma"):
        for precision in PRECISIONS:
            fn = kernel(name, precision)
            if not fn.signatures:
                fn(*_setup(name, precision, 4 * KiB)[0], 1)
            asm = fn.inspect_asm(fn.signatures[0])
            ops = re.findall(r"\b(v(?:add|fmadd\d*|mul)p[sd])\b[^\n]*?%?\b([xyz]mm)\d+", asm)
            regs = {r for _, r in ops}
            widest = next((r for r in ("zmm", "ymm", "xmm") if r in regs), "scalar")
            names = sorted({op for op, r in ops if r == widest})
            out[f"{name} {precision}"] = f"{widest} ({', '.join(names) or '-'}; {sum(r == widest for _, r in ops)} ops)"
    return out


# ---------------------------------------------------------------------------------------------- roofline


def roofline(quick: bool = False, verbose: bool = False) -> dict:
    """Measure the roofs of this machine; returns (and keeps in ``ROOFLINE``) a JSON-able dict.

    ``GBps[kernel][precision][level][cores]`` (kernel read/triad, level L2/L3/mem, cores "1"/"2"),
    ``GFLOPs[kernel][precision][cores]`` (kernel fma, fma loop, fma chain), ``peak_GFLOPs[precision][cores]``
    (theoretical, at the estimated clock), ``clock_GHz``, ``sizes`` (bytes), ``rows`` (every measurement),
    ``machine``, ``load_avg`` (start, end).
    """
    global ROOFLINE
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    info = machine()
    sizes = choose_sizes(info["caches"], quick, info.get("MemAvailable"))
    # short samples, many of them: on a shared 2-cpu VM the best ones are those no other job interrupted
    target_s, samples, mem_samples = (0.005, 10, 3) if quick else (0.01, 60, 10)
    max_cores = min(2, info["cpus"])
    core_counts = [c for c in (1, 2) if c <= max_cores]
    rows = []

    def plan(cores, level=None):
        """(seconds, count) of the samples. Two-core samples need both cpus free at once: a third as long (a
        woken thread preempts another job for a few ms), three times as many; memory: twice as many."""
        if level == "mem":
            return target_s, mem_samples * cores
        return (target_s, samples) if cores == 1 else (target_s / 3, 3 * samples)

    def log(name, precision, level, cores, ws, unit, r):
        row = {"kernel": name, "precision": precision, "level": level, "cores": cores, "ws": ws, "unit": unit}
        row.update(best=r["best"] / 1e9, median=r["median"] / 1e9, reps=r["reps"], samples=r["samples"])
        rows.append(row)
        if verbose:
            print(_format_row(row), flush=True)

    if verbose:
        print(_table_header(), flush=True)
    for name in ("read", "triad"):
        for precision in PRECISIONS:
            for level in LEVELS:
                for cores in core_counts:
                    per_thread = sizes[level] if level != "mem" else sizes[level] // cores
                    r = measure(name, precision, per_thread, cores, *plan(cores, level))
                    log(name, precision, level, cores, cores * per_thread, "GB/s", r)
    for precision in PRECISIONS:
        for name in ("fma chain", "fma", "fma loop"):  # the chain (clock) measured next to the fma it scales
            for cores in [1] if name == "fma chain" else core_counts:
                r = measure(name, precision, 0, cores, *plan(cores))
                ws = cores * _setup(name, precision, 0)[0][0].nbytes
                log(name, precision, "reg" if name != "fma loop" else "L1", cores, ws, "GFLOP/s", r)

    gbps: dict = {}
    gflops: dict = {}
    for row in rows:
        if row["unit"] == "GB/s":
            d = gbps.setdefault(row["kernel"], {}).setdefault(row["precision"], {}).setdefault(row["level"], {})
        else:
            d = gflops.setdefault(row["kernel"], {}).setdefault(row["precision"], {})
        d[str(row["cores"])] = round(row["best"], 2)
    # one dependent chain: FMA_LATENCY cycles per vector FMA
    chain = max(gflops["fma chain"][p]["1"] / (2 * _lanes(p)) for p in PRECISIONS)
    clock = FMA_LATENCY * chain  # GHz
    nominal = (info.get("nominal_mhz") or 0) / 1e3 or None
    lanes = {p: (_lanes(p) if info["flags"]["avx512f"] else _lanes(p) // 2) for p in PRECISIONS}
    peak = {p: {str(c): round(c * FMA_UNITS * lanes[p] * 2 * clock, 1) for c in core_counts} for p in PRECISIONS}
    peak_nominal = (
        {p: {str(c): round(c * FMA_UNITS * lanes[p] * 2 * nominal, 1) for c in core_counts} for p in PRECISIONS}
        if nominal
        else None
    )
    ROOFLINE = {
        "machine": info,
        "vector_code": vector_code(),
        "load_avg": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "quick": quick,
        "sizes": sizes,
        "GBps": gbps,
        "GFLOPs": gflops,
        "clock_GHz": {"estimated": round(clock, 3), "nominal": nominal},
        "assumptions": {"fma_units_per_core": FMA_UNITS, "fma_latency_cycles": FMA_LATENCY, "lanes": lanes},
        "peak_GFLOPs": peak,
        "peak_GFLOPs_nominal_clock": peak_nominal,
        "seconds": round(time.perf_counter() - t_start, 1),
        "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }
    return ROOFLINE


# ---------------------------------------------------------------------------------------------- fraction


def load(path: str | os.PathLike | None = None) -> dict:
    """The roofs: ``path`` (a JSON file or a roofline.txt) or $MIXSLAM_ROOFLINE, else docs/results/roofline.txt,
    else measured now (quick). Cached in ``ROOFLINE``."""
    global ROOFLINE
    if path is None and ROOFLINE is not None:
        return ROOFLINE
    for p in (path, os.environ.get("MIXSLAM_ROOFLINE"), RESULTS_TXT):
        if not p or not Path(p).is_file():
            continue
        text = Path(p).read_text()
        at = text.rfind("ROOFLINE = ")
        try:
            roof = json.JSONDecoder().raw_decode(text[at + len("ROOFLINE = ") :] if at >= 0 else text.strip())[0]
        except ValueError:
            continue
        here = machine()
        if roof.get("machine", {}).get("cpu") != here["cpu"] or roof["machine"].get("caches") != here["caches"]:
            print(f"roofline: {p} was measured on another CPU ({roof.get('machine', {}).get('cpu')})", file=sys.stderr)
        ROOFLINE = roof
        return roof
    print("roofline: no saved roofs, measuring (quick) ...", file=sys.stderr)
    return roofline(quick=True)


def _precision(p) -> str:
    if isinstance(p, str) and p in PRECISIONS:
        return p
    if isinstance(p, str) and p in ("fp16", "mixed"):
        return "fp32"  # fp16 storage is computed in fp32
    return "fp64" if np.dtype(p) == np.float64 else "fp32"


def fraction(
    bytes_per_s: float | None = None,
    flops_per_s: float | None = None,
    level: str = "L3",
    cores: int = 1,
    precision="fp32",
    roof: dict | None = None,
    kernel: str = "read",
) -> str:
    """``"x.x GB/s = yy% of L3 read (1 core)"`` and/or ``"x.x GFLOP/s = yy% of fp32 FMA peak (1 core)"``.

    ``level``: L2, L3 or mem (memory, dram); ``kernel``: read or triad (the bandwidth roof); ``precision``:
    fp64 / fp32 (fp16 and mixed count as fp32) or a numpy dtype; the flop roof is the measured ``fma`` kernel.
    """
    roof = roof if roof is not None else load()
    prec = _precision(precision)
    lvl = {"l2": "L2", "l3": "L3", "mem": "mem", "memory": "mem", "dram": "mem"}.get(str(level).lower())
    if lvl is None:
        raise ValueError(f"level {level!r}: one of L2, L3, mem")
    c = str(cores)
    plural = "core" if cores == 1 else "cores"
    parts = []

    def pct(x):
        return f"{x:.1f}%" if x < 10 else f"{x:.0f}%"

    if bytes_per_s is not None:
        gb = bytes_per_s / 1e9
        r = roof["GBps"][kernel][prec][lvl][c]
        parts.append(f"{gb:.1f} GB/s = {pct(100 * gb / r)} of {lvl} {kernel} ({cores} {plural})")
    if flops_per_s is not None:
        gf = flops_per_s / 1e9
        r = roof["GFLOPs"]["fma"][prec][c]
        parts.append(f"{gf:.1f} GFLOP/s = {pct(100 * gf / r)} of {prec} FMA ({cores} {plural})")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- output


def _bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def _table_header() -> str:
    return (
        f"{'kernel':<10} {'prec':<5} {'level':<5} {'cores':>5} {'working set':>12} {'best':>9} {'median':>9} "
        f"{'unit':<8} {'reps x samples':>15}"
    )


def _format_row(r: dict) -> str:
    return (
        f"{r['kernel']:<10} {r['precision']:<5} {r['level']:<5} {r['cores']:>5} {_bytes(r['ws']):>12} "
        f"{r['best']:>9.1f} {r['median']:>9.1f} {r['unit']:<8} {str(r['reps']) + ' x ' + str(r['samples']):>15}"
    )


def _dumps(roof: dict) -> str:
    """JSON, one top-level key (and one row) a line."""
    lines = []
    for k, v in roof.items():
        if k == "rows":
            body = ",\n".join("  " + json.dumps(r) for r in v)
            lines.append(f' "rows": [\n{body}\n ]')
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller memory set, fewer and shorter samples (~15 s)")
    ap.add_argument("--json", metavar="PATH", help="also write the roofs as JSON to PATH")
    args = ap.parse_args(argv)

    info = machine()
    sizes = choose_sizes(info["caches"], args.quick, info.get("MemAvailable"))
    caches = ", ".join(f"{k} {_bytes(v)}" for k, v in info["caches"].items())
    flags = " ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["flags"].items())
    print(f"roofline{' (quick)' if args.quick else ''}, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"CPU: {info['cpu']} (family/model {info['family_model']}, LLVM host cpu {info['llvm_cpu']}), ", end="")
    print(f"{info['cpus']} cpus, nominal {info['nominal_mhz']} MHz, memory {_bytes(info.get('MemTotal', 0))}")
    print(f"flags: {flags}")
    print(f"caches (per instance): {caches}")
    print(f"versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}")
    print("load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"working sets: L2 {_bytes(sizes['L2'])} per core (L2/2), L3 {_bytes(sizes['L3'])} per core "
        f"(8 x L2, <= L3/8), memory {_bytes(sizes['mem'])} over all cores ({'2' if args.quick else '4'} x L3)"
    )
    print(
        "GB/s counts bytes read + written by the loop (triad: 3 x element size per element; the write-allocate "
        "read of a is not counted). GFLOP/s: 2 flops per FMA. Best of N samples, median beside it."
    )
    print()
    roof = roofline(quick=args.quick, verbose=True)
    print()
    print("vector code (from inspect_asm):")
    for k, v in roof["vector_code"].items():
        print(f"  {k:<14} {v}")
    clock = roof["clock_GHz"]
    print(
        f"\nestimated core clock {clock['estimated']:.2f} GHz (one FMA chain x {FMA_LATENCY}-cycle latency); "
        f"nominal {clock['nominal']} GHz"
    )
    print(
        f"theoretical FMA peak = {FMA_UNITS} FMA units (assumed) x lanes {roof['assumptions']['lanes']} x 2 flops "
        "x clock, per core:"
    )
    for p in PRECISIONS:
        for c, peak in roof["peak_GFLOPs"][p].items():
            got = roof["GFLOPs"]["fma"][p][c]
            loop = roof["GFLOPs"]["fma loop"][p][c]
            nom = roof["peak_GFLOPs_nominal_clock"]
            nom_txt = f", {100 * got / nom[p][c]:.0f}% of {nom[p][c]:.0f} at the nominal clock" if nom else ""
            print(
                f"  {p} {c} core{'s' if c != '1' else ''}: peak {peak:.1f} GFLOP/s; fma {got:.1f} "
                f"= {100 * got / peak:.0f}%{nom_txt}; fma loop {loop:.1f} = {100 * loop / peak:.0f}%"
            )
    print(
        "load average at end (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in roof["load_avg"]["end"])
        + f"; {roof['seconds']} s"
    )
    text = _dumps(roof)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print("\nROOFLINE = " + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
