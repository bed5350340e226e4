#!/usr/bin/env python3
"""PyTorch peer of `exactflow train --model realnvp --data moons` (the BENCHMARKS.md target).

The same model, data, optimizer and schedule as exactflow's `realnvp` `toy` preset:

- RealNVP on 2-D data: 8 affine couplings, masks alternating between "first half conditions"
  and "second half conditions"; each conditioner an MLP 1 -> 128 -> 128 -> 2 with ReLU and a
  zero-initialized last layer, returning (h, t); s = scale * tanh(h) with a learned `scale`
  initialized to 1; z_B = x_B * exp(s) + t; standard normal prior.
- Two moons, Gaussian noise 0.05, raw coordinates; 20000 training and 5000 validation points.
- Adam (betas 0.9, 0.999, eps 1e-8), gradient-norm clipping at 100, batch 512, 2000 steps,
  linear warmup over 2% of the steps then cosine decay to 1% of the peak lr.

Install and run (never run by CI):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benches/peers/torch_realnvp_moons.py --threads 1
    /tmp/torchenv/bin/python benches/peers/torch_realnvp_moons.py --threads 2

Prints one JSON object: validation NLL (nats) and training throughput (samples/s, optimizer steps
only, excluding validation), comparable with exactflow's metrics.json.
"""

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn


def make_moons(n, noise, rng):
    """Two interleaving half circles (scikit-learn's make_moons geometry), shuffled."""
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, math.pi, n_out)
    t_in = np.linspace(0, math.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1)
    x = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n, 2))
    rng.shuffle(x)
    return torch.tensor(x, dtype=torch.float64)


class Coupling(nn.Module):
    def __init__(self, dim, flip, hidden=128):
        super().__init__()
        half = dim // 2
        idx = torch.arange(dim)
        a = idx < half
        if flip:
            a = ~a
        self.register_buffer("a_idx", idx[a])
        self.register_buffer("b_idx", idx[~a])
        nb = int((~a).sum())
        self.net = nn.Sequential(
            nn.Linear(int(a.sum()), hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * nb),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(nb))

    def forward(self, x):
        xa, xb = x[:, self.a_idx], x[:, self.b_idx]
        h, t = self.net(xa).chunk(2, dim=1)
        s = self.scale * torch.tanh(h)
        z = x.clone()
        z[:, self.b_idx] = xb * torch.exp(s) + t
        return z, s.sum(dim=1)


class RealNVP(nn.Module):
    def __init__(self, dim=2, couplings=8):
        super().__init__()
        self.flow = nn.ModuleList([Coupling(dim, k % 2 == 1) for k in range(couplings)])

    def log_prob(self, x):
        ld = torch.zeros(x.shape[0], dtype=x.dtype)
        for layer in self.flow:
            x, l = layer(x)
            ld = ld + l
        base = -0.5 * (x ** 2).sum(dim=1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return base + ld


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=512, help="samples per step")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of data, init and batches")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="precision")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    dtype = getattr(torch, a.dtype)
    train = make_moons(20000, 0.05, rng).to(dtype)
    val = make_moons(5000, 0.05, rng).to(dtype)
    model = RealNVP().to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    warmup = a.steps // 50

    def lr_factor(step):
        if step < warmup:
            return (step + 1) / warmup
        prog = (step - warmup) / max(1, a.steps - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    n = train.shape[0]
    perm = torch.randperm(n)
    pos = 0
    step_time = 0.0
    for step in range(a.steps):
        if pos + a.batch_size > n:
            perm = torch.randperm(n)
            pos = 0
        batch = train[perm[pos:pos + a.batch_size]]
        pos += a.batch_size
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = -model.log_prob(batch).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()
        sched.step()
        step_time += time.perf_counter() - t0
    with torch.no_grad():
        val_nll = -model.log_prob(val).mean().item()
    print(json.dumps({
        "framework": f"torch {torch.__version__}",
        "threads": a.threads,
        "dtype": a.dtype,
        "steps": a.steps,
        "batch_size": a.batch_size,
        "validation_nll": val_nll,
        "samples_per_sec": a.steps * a.batch_size / step_time,
        "train_seconds": step_time,
    }))


if __name__ == "__main__":
    main()
