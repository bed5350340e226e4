#!/bin/bash
# Every training preset on its own data, --threads 1 against --threads 2 (f32): three alternated
# pairs of runs of about 4 s each on one thread, with the time the host stole from this
# machine's CPUs during each run (the steal column of /proc/stat, in ticks of 10 ms).
# Prints "label t<threads> <samples/s> steal=<ticks>" per run (BENCHMARKS.md, "Fourth round").
#
#   cargo build --release -p exactflow
#   benches/peers/threads_sweep.sh [path/to/exactflow] > sweep.txt
set -u
E=${1:-target/release/exactflow}
pairs() { # label args...
  local label=$1; shift
  for _ in 1 2 3; do
    for t in 1 2; do
      local out s0 s1 sps
      out=$(mktemp -d)
      s0=$(awk '/^cpu /{print $9}' /proc/stat)
      if ! "$E" train "$@" --threads "$t" --precision f32 --out "$out" >/dev/null 2>&1; then
        echo "$label t$t FAILED"; rm -rf "$out"; continue
      fi
      s1=$(awk '/^cpu /{print $9}' /proc/stat)
      sps=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['samples_per_sec']))" "$out/metrics.json")
      echo "$label t$t $sps steal=$((s1 - s0))"
      rm -rf "$out"
    done
  done
}
pairs realnvp-toy-moons --model realnvp --preset toy --data moons --steps 600
pairs realnvp-digits-b512 --model realnvp --preset digits --data digits --steps 160
pairs realnvp-digits-b64 --model realnvp --preset digits --data digits --steps 600 --batch-size 64
pairs realnvp-digits-bn-b64 --model realnvp --preset digits-bn --data digits --steps 600 --batch-size 64
pairs realnvp-digits-image-b64 --model realnvp --preset digits-image --data digits-image --steps 50 --batch-size 64
pairs nice-toy-moons --model nice --preset toy --data moons --steps 600
pairs nice-paper-digits-b64 --model nice --preset paper --data digits --steps 40 --batch-size 64
pairs nice-digits-b64 --model nice --preset digits --data digits --steps 600 --batch-size 64
pairs maf-toy-moons --model maf --preset toy --data moons --steps 140
pairs maf-digits-b64 --model maf --preset digits --data digits --steps 600 --batch-size 64
pairs iaf-toy-moons --model iaf --preset toy --data moons --steps 70
pairs iaf-digits-b64 --model iaf --preset digits --data digits --steps 30 --batch-size 64
pairs nsf-coupling-moons --model nsf --preset coupling --data moons --steps 300
pairs nsf-ar-moons --model nsf --preset autoregressive --data moons --steps 170
pairs nsf-digits-b64 --model nsf --preset digits --data digits --steps 120 --batch-size 64
pairs nsf-digits-ar-b64 --model nsf --preset digits-autoregressive --data digits --steps 90 --batch-size 64
pairs nsf-sbi --model nsf --preset sbi --data sim:gaussian-linear --steps 600
pairs glow-tiny-b64 --model glow --preset tiny --data digits-image --steps 1500 --batch-size 64
pairs glow-digits-b64 --model glow --preset digits --data digits-image --steps 170 --batch-size 64
