#!/usr/bin/env python3
"""PyTorch peer of `exactflow train --data digits` for NICE and RealNVP (BENCHMARKS.md).

The same architectures as exactflow's `digits` presets, the same data convention and budget:

- data: the embedded 8x8 UCI digits (models/data/digits.csv.gz), 17 levels; 0-based row i is
  test when i % 5 == 4 (359 rows), the rest train. exactflow additionally holds out a seeded 10%
  of the training rows for validation (early-stopping statistics only), so it trains on 1294 rows;
  this script trains on the same number (the first 1294 training rows in a seeded shuffle).
- dequantization u = (x + U[0,1)) / 17, logit preprocessing z = logit(0.05 + 0.9 u) with its
  log-det; NLL reported for the integer data's continuous relaxation (subtracting 64 ln 17), in
  bits/dim = NLL / (64 ln 2); the test set is evaluated with one fixed noise draw.
- RealNVP (`realnvp digits`): 6 affine couplings, odd/even masks alternating, MLP 32 -> 256 ->
  256 -> 64 (ReLU, zero-initialized last layer) returning (h, t), s = scale * tanh(h), standard
  normal prior.
- NICE (`nice digits`): 4 additive couplings, odd/even masks alternating, MLP 32 -> 256 -> 256
  -> 256 -> 32 (ReLU, zero last layer), diagonal scaling exp(s), standard logistic prior.
- Adam lr 1e-3 (warmup 2% then cosine to 1%), gradient clipping at 100, batch 64, 20 epochs.

Install and run (never run by CI):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benches/peers/torch_digits.py --model realnvp
    /tmp/torchenv/bin/python benches/peers/torch_digits.py --model nice
"""

import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "models", "data", "digits.csv.gz")
ALPHA = 0.05
LEVELS = 17


def load():
    rows = np.loadtxt(gzip.open(DATA, "rt"), delimiter=",", dtype=np.float64)
    x = rows[:, :64]
    test = np.arange(len(x)) % 5 == 4
    return x[~test], x[test]


def mlp(inp, hidden, out):
    layers, w = [], inp
    for h in hidden:
        layers += [nn.Linear(w, h), nn.ReLU()]
        w = h
    last = nn.Linear(w, out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class Coupling(nn.Module):
    def __init__(self, dim, flip, hidden, affine):
        super().__init__()
        a = torch.arange(dim) % 2 == 0
        if flip:
            a = ~a
        self.register_buffer("a_idx", torch.arange(dim)[a])
        self.register_buffer("b_idx", torch.arange(dim)[~a])
        nb = int((~a).sum())
        self.affine = affine
        self.net = mlp(int(a.sum()), hidden, 2 * nb if affine else nb)
        if affine:
            self.scale = nn.Parameter(torch.ones(nb))

    def forward(self, x):
        xa, xb = x[:, self.a_idx], x[:, self.b_idx]
        out = self.net(xa)
        z = x.clone()
        if self.affine:
            h, t = out.chunk(2, dim=1)
            s = self.scale * torch.tanh(h)
            z[:, self.b_idx] = xb * torch.exp(s) + t
            return z, s.sum(dim=1)
        z[:, self.b_idx] = xb + out
        return z, torch.zeros(x.shape[0], dtype=x.dtype)


class Flow(nn.Module):
    def __init__(self, model, dim=64):
        super().__init__()
        if model == "realnvp":
            self.layers = nn.ModuleList([Coupling(dim, k % 2 == 1, [256, 256], True) for k in range(6)])
            self.s = None
        else:
            self.layers = nn.ModuleList([Coupling(dim, k % 2 == 1, [256, 256, 256], False) for k in range(4)])
            self.s = nn.Parameter(torch.zeros(dim))
        self.model = model

    def log_prob(self, u):
        v = ALPHA + (1 - 2 * ALPHA) * u
        x = torch.log(v) - torch.log1p(-v)
        ld = (math.log(1 - 2 * ALPHA) - torch.log(v) - torch.log1p(-v)).sum(dim=1)
        for layer in self.layers:
            x, l = layer(x)
            ld = ld + l
        if self.s is not None:
            x = x * torch.exp(self.s)
            ld = ld + self.s.sum()
            base = -(x.abs() + 2 * torch.log1p(torch.exp(-x.abs()))).sum(dim=1)
        else:
            base = -0.5 * (x ** 2).sum(dim=1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return base + ld


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["realnvp", "nice"], default="realnvp", help="architecture")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training rows")
    p.add_argument("--batch-size", type=int, default=64, help="samples per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="precision of the model and the data (every peer trains in float32)")
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train, test = load()
    train = train[rng.permutation(len(train))[:1294]]
    train = torch.tensor(train).to(dtype)
    test_u = torch.tensor((test + rng.random(test.shape)) / LEVELS).to(dtype)
    flow = Flow(a.model).to(dtype)
    opt = torch.optim.Adam(flow.parameters(), lr=a.lr)
    per_epoch = len(train) // a.batch_size
    total = per_epoch * a.epochs
    warmup = total // 50

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        prog = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    start = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(len(train))
        for b in range(per_epoch):
            x = train[perm[b * a.batch_size:(b + 1) * a.batch_size]]
            u = (x + torch.rand_like(x)) / LEVELS
            loss = -flow.log_prob(u).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        nll = -(flow.log_prob(test_u) - 64 * math.log(LEVELS)).mean().item()
    print(json.dumps({
        "framework": f"torch {torch.__version__}",
        "dtype": a.dtype,
        "model": a.model,
        "epochs": a.epochs,
        "steps": total,
        "test_nll": nll,
        "test_bits_per_dim": nll / (64 * math.log(2)),
        "samples_per_sec": total * a.batch_size / seconds,
    }))


if __name__ == "__main__":
    main()
