"""exactflow.slogdet against numpy.linalg.slogdet (OpenBLAS's LU), and the Python binding's
overhead against the Rust call, in one run, one thread each.

    cargo build -p exactflow-benches --release --bin logdet_npy
    python benches/peers/numpy_slogdet.py [--sizes 64,128,256,512,1024,2048] [--rounds 5]

needs a Python environment with numpy and the exactflow package (README, "From Python"). The
script sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and RAYON_NUM_THREADS to 1
before importing numpy, so that every contender runs on one thread.

For each n, the matrix has entries uniform in [-1, 1) (seeded), as in the criterion logdet bench.
Each round times, per n, `calls` calls of each Python contender, interleaved call by call, then
runs the Rust timer `logdet_npy` (target/release/logdet_npy, or $LOGDET_NPY) for as many calls on
the same matrix saved as .npy:

- numpy: numpy.linalg.slogdet(a) (LAPACK dgetrf from the OpenBLAS numpy ships with, then the
  diagonal's logs);
- exactflow: exactflow.slogdet(a) on the C-ordered array: the binding copies it once into a Rust
  buffer, releases the GIL, factors that buffer in place and returns NumPy scalars;
- exactflow (Fortran order): the same on np.asfortranarray(a), whose copy walks the array in
  row-major order across columns;
- Rust: exactflow_kernels::log_det_with(&matrix, Auto), which copies the matrix once into the LU's
  buffer: the same work without Python.

It prints the machine, the median time of every contender at every n (over all rounds and calls),
the ratios exactflow / numpy and exactflow / Rust (the binding's overhead: copy and call), and
checks that the results agree (sign equal, log|det| within 1e-9 relative).
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402  (after the thread settings)

import exactflow  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]


def calls_for(n):
    """Calls per round and contender: about 0.5 s of one contender's time (on a quiet 2-core
    machine), at least 5."""
    seconds = 3e-11 * n**3 + 3e-6  # a rough model of one call
    return max(5, min(300, int(0.5 / seconds)))


def timed_interleaved(contenders, calls, into):
    """Times `calls` rounds of one call of each contender in turn (so that a slow moment of the
    machine hits them alike), appending to into[name]."""
    for _ in range(calls):
        for name, f, a in contenders:
            t0 = time.perf_counter()
            f(a)
            into[name].append(time.perf_counter() - t0)


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,128,256,512,1024,2048")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the raw times to this file")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rust_bin = pathlib.Path(os.environ.get("LOGDET_NPY", REPO / "target" / "release" / "logdet_npy"))
    if not rust_bin.is_file():
        sys.exit(f"{rust_bin} is missing: cargo build -p exactflow-benches --release --bin logdet_npy")

    rng = np.random.default_rng(2026)
    mats = {n: rng.uniform(-1.0, 1.0, size=(n, n)) for n in sizes}
    fortran = {n: np.asfortranarray(a) for n, a in mats.items()}
    times = {n: {"numpy": [], "exactflow": [], "exactflow_fortran": [], "rust": []} for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n, a in mats.items():
            paths[n] = pathlib.Path(tmp) / f"a{n}.npy"
            np.save(paths[n], a)
        for n in sizes:  # agreement, and one warm-up call each
            s_ref, l_ref = np.linalg.slogdet(mats[n])
            s, l = exactflow.slogdet(mats[n])
            assert s == s_ref and abs(l - l_ref) <= 1e-9 * abs(l_ref), (n, s, l, s_ref, l_ref)
            assert exactflow.slogdet(fortran[n]) == (s, l)
        for r in range(args.rounds):
            for n in sizes:
                contenders = [
                    ("numpy", np.linalg.slogdet, mats[n]),
                    ("exactflow", exactflow.slogdet, mats[n]),
                    ("exactflow_fortran", exactflow.slogdet, fortran[n]),
                ]
                timed_interleaved(contenders, calls_for(n), times[n])
                p = subprocess.run(
                    [str(rust_bin), "--calls", str(calls_for(n)), str(paths[n])],
                    capture_output=True, text=True, check=True,
                )
                line = json.loads(p.stdout.splitlines()[0])
                _, l = exactflow.slogdet(mats[n])
                assert abs(line["log_abs"] - l) <= 1e-9 * abs(l)
                times[n]["rust"] += line["seconds"]
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
          f"Python {platform.python_version()}, numpy {np.__version__} ({blas_name()}), exactflow {exactflow.__version__}")
    print(f"rounds: {args.rounds}; calls per round and contender: "
          + ", ".join(f"n={n}: {calls_for(n)}" for n in sizes))
    print()
    print("| n | numpy (OpenBLAS) | exactflow | exactflow, Fortran order | Rust call | exactflow / numpy | exactflow / Rust | Fortran / Rust |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        m = med[n]
        print(f"| {n} | {fmt(m['numpy'])} | {fmt(m['exactflow'])} | {fmt(m['exactflow_fortran'])} | {fmt(m['rust'])} "
              f"| {m['exactflow'] / m['numpy']:.2f}x | {m['exactflow'] / m['rust']:.3f}x | {m['exactflow_fortran'] / m['rust']:.3f}x |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({str(n): t for n, t in times.items()}))


def fmt(s):
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


if __name__ == "__main__":
    main()
