#!/usr/bin/env python3
"""The training race of BENCHMARKS.md ("f32 and two threads"): exactflow against plain PyTorch and
nflows, measured in one run on one machine, in alternation.

Each group is a set of runs of the same model and data: exactflow in f32 and f64 on 1 and 2
threads, and the peer script (plain PyTorch in float32, or nflows) on 1 and 2 threads. A round
runs every entry of a group once; the order rotates from round to round, so that a slow phase of
the machine does not always hit the same entry. An entry's throughput is the median of its
rounds; a ratio (entry / baseline) is the median of the per-round ratios, with their range.

Throughput is training samples per second over the optimizer steps only, as exactflow's
metrics.json (`samples_per_sec`) and the peer scripts report it. The throughput rounds are
shortened (--quick-steps / --quick-epochs); `--full` also runs every entry once at its full
length, which gives the NLL columns (validation NLL for moons, test bits/dim for digits).

Usage (after `cargo build --release -p exactflow -p exactflow-benches`):

    python3 benches/peers/race.py --python /path/to/torch-venv/bin/python --rounds 3 --full \\
        --out race.json

Prints a markdown table per group and writes every measurement to --out as JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def exactflow_train(binary, args, threads, precision):
    """An entry that runs `exactflow train` and reads its metrics.json."""

    def run(extra):
        with tempfile.TemporaryDirectory() as out:
            cmd = [binary, "train", *args, *extra, "--threads", str(threads),
                   "--precision", precision, "--out", out]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(out, "metrics.json")) as f:
                m = json.load(f)
        return {
            "samples_per_sec": m["samples_per_sec"],
            "validation_nll": m["validation"]["nll"],
            "test_nll": m["test"]["nll"],
            "test_bits_per_dim": m["test"]["bits_per_dim"],
        }

    return run


def peer(python, script, args, threads):
    """An entry that runs a peer script (which prints one JSON object on its last line)."""

    def run(extra):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        cmd = [python, os.path.join(HERE, script), *args, *extra, "--threads", str(threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])

    return run


def flow_moons(binary, model, threads, precision):
    """An entry that runs the flow_moons bench binary (MAF, IAF, NSF on two moons)."""

    def run(extra):
        cmd = [binary, "--model", model, "--precision", precision, "--threads", str(threads), *extra]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    return run


def group(baseline, quick, full, entries, peer_quick=None):
    """A group: the same quick and full-length flags for both sides, unless the peer's quick
    flags differ."""
    return {"baseline": baseline, "quick": quick, "full": full,
            "peer_quick": quick if peer_quick is None else peer_quick, "peer_full": full,
            "entries": entries}


def exactflow_precisions(ef, args, with_f64_t2=False):
    """exactflow in f32 on 1 and 2 threads and in f64 on 1 (and 2) threads."""
    e = {
        "exactflow f32 t1": exactflow_train(ef, args, 1, "f32"),
        "exactflow f32 t2": exactflow_train(ef, args, 2, "f32"),
        "exactflow f64 t1": exactflow_train(ef, args, 1, "f64"),
    }
    if with_f64_t2:
        e["exactflow f64 t2"] = exactflow_train(ef, args, 2, "f64")
    return e


def pytorch(py, script, args):
    """The PyTorch peer in float32 on 1 and 2 threads."""
    return {f"pytorch f32 t{t}": peer(py, script, [*args, "--dtype", "float32"], t) for t in (1, 2)}


def groups(a):
    ef, py, fm = a.exactflow, a.python, a.flow_moons
    steps, epochs = ["--steps", str(a.quick_steps)], ["--epochs", str(a.quick_epochs)]
    moons = ["--model", "realnvp", "--data", "moons", "--batch-size", "512", "--lr", "5e-4"]
    g = {"moons-realnvp": group(
        "pytorch f32 t1", steps, ["--steps", "2000"],
        {**exactflow_precisions(ef, moons, with_f64_t2=True), **pytorch(py, "torch_realnvp_moons.py", [])})}
    for model in ["realnvp", "nice"]:
        args = ["--model", model, "--data", "digits", "--batch-size", "64"]
        g[f"digits-{model}"] = group(
            "pytorch f32 t1", epochs, ["--epochs", "20"],
            {**exactflow_precisions(ef, args), **pytorch(py, "torch_digits.py", ["--model", model])})
    for name, model, preset, script in [
        ("glow-digits", "glow", "digits", "torch_glow_digits.py"),
        ("multiscale-digits", "realnvp", "digits-image", "torch_realnvp_multiscale_digits.py"),
    ]:
        args = ["--model", model, "--preset", preset, "--data", "digits-image", "--batch-size", "64"]
        g[name] = group(
            "pytorch f32 t1", ["--epochs", str(a.quick_image_epochs)], ["--epochs", "20"],
            {**exactflow_precisions(ef, args), **pytorch(py, script, [])})
    for task in ["gaussian-linear", "gaussian-linear-10"]:
        # sbi's density estimator on the simulator, both sides on 20,000 pairs (the peer's
        # default; exactflow's own default for simulators is 200,000).
        args = ["--model", "nsf", "--preset", "sbi", "--data", f"sim:{task}", "--toy-samples", "20000"]
        g[f"sbi-{task}"] = group(
            "nflows f32 t1", steps, ["--steps", "2000"],
            {
                "exactflow f32 t1": exactflow_train(ef, args, 1, "f32"),
                "exactflow f32 t2": exactflow_train(ef, args, 2, "f32"),
                "nflows f32 t1": peer(py, "nflows_conditional.py", ["--task", task], 1),
            },
            peer_quick=[*steps, "--observations", "10", "--posterior-samples", "100"])
    for model in ["maf", "iaf", "nsf-coupling", "nsf-autoregressive"]:
        g[f"moons-{model}"] = group(
            "nflows f32 t1", [*steps, "--repeats", "20"], ["--steps", "2000"],
            {
                **{f"exactflow f32 t{t}": flow_moons(fm, model, t, "f32") for t in (1, 2)},
                **{f"nflows f32 t{t}": peer(py, "nflows_moons.py", ["--model", model], t) for t in (1, 2)},
            })
    return g


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exactflow", default=os.path.join(ROOT, "target/release/exactflow"),
                   help="the exactflow binary")
    p.add_argument("--flow-moons", default=os.path.join(ROOT, "target/release/flow_moons"),
                   help="the flow_moons bench binary")
    p.add_argument("--python", default=sys.executable, help="a Python with torch, numpy and nflows")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds per group")
    p.add_argument("--quick-steps", type=int, default=500, help="steps of a moons throughput run")
    p.add_argument("--quick-epochs", type=int, default=20, help="epochs of a digits throughput run")
    p.add_argument("--quick-image-epochs", type=int, default=3,
                   help="epochs of a digit-image throughput run")
    p.add_argument("--full", action="store_true", help="also one full-length run per entry (NLL)")
    p.add_argument("--only", default="", help="comma-separated group names (default: all)")
    p.add_argument("--out", default="race.json", help="where the measurements go (JSON)")
    a = p.parse_args()
    gs = groups(a)
    if a.only:
        keep = a.only.split(",")
        unknown = [k for k in keep if k not in gs]
        if unknown:
            raise SystemExit(f"unknown group(s) {unknown}; known: {list(gs)}")
        gs = {k: gs[k] for k in keep}
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "groups": {}}
    for name, g in gs.items():
        labels = list(g["entries"])
        rounds = []
        for r in range(a.rounds):
            order = labels[r % len(labels):] + labels[:r % len(labels)]
            got = {}
            for label in order:
                extra = g["quick"] if label.startswith("exactflow") else g["peer_quick"]
                got[label] = g["entries"][label](extra)
                print(f"{name} round {r + 1} {label}: {got[label]['samples_per_sec']:.0f} samples/s",
                      file=sys.stderr, flush=True)
            rounds.append(got)
        full = {}
        if a.full:
            for label in labels:
                extra = g["full"] if label.startswith("exactflow") else g["peer_full"]
                full[label] = g["entries"][label](extra)
                print(f"{name} full {label}: {json.dumps(full[label])}", file=sys.stderr, flush=True)
        base = g["baseline"]
        summary = {}
        for label in labels:
            sps = [r[label]["samples_per_sec"] for r in rounds]
            ratios = [r[label]["samples_per_sec"] / r[base]["samples_per_sec"] for r in rounds]
            summary[label] = {
                "samples_per_sec_median": statistics.median(sps),
                "ratio_to_baseline_median": statistics.median(ratios),
                "ratio_range": [min(ratios), max(ratios)],
            }
            if "exactflow f32 t2" == label and "exactflow f32 t1" in labels:
                t = [r[label]["samples_per_sec"] / r["exactflow f32 t1"]["samples_per_sec"] for r in rounds]
                summary[label]["ratio_to_t1_median"] = statistics.median(t)
                summary[label]["ratio_to_t1_range"] = [min(t), max(t)]
        results["groups"][name] = {"baseline": base, "rounds": rounds, "full": full, "summary": summary}
        print(f"\n### {name} (baseline: {base}; {a.rounds} rounds)\n")
        print("| entry | samples/s (median) | / baseline [range] | full-run NLL |")
        print("|---|---:|---:|---:|")
        for label, s in summary.items():
            f = full.get(label, {})
            nll = f.get("test_bits_per_dim") or f.get("validation_nll") or f.get("test_nll")
            lo, hi = s["ratio_range"]
            print(f"| {label} | {s['samples_per_sec_median']:,.0f} | {s['ratio_to_baseline_median']:.2f}x "
                  f"[{lo:.2f}-{hi:.2f}] | {'' if nll is None else f'{nll:.4f}'} |", flush=True)
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
