#!/usr/bin/env python3
"""PyTorch peer of `exactflow train --model glow --data digits-image` (BENCHMARKS.md).

The same architecture as exactflow's `glow digits` preset (models/src/glow.rs), the same data
convention and budget as benches/peers/torch_digits.py:

- data: the embedded 8x8 UCI digits (models/data/digits.csv.gz) as [1, 8, 8] images, 17 levels;
  0-based row i is test when i % 5 == 4 (359 rows), the rest train. exactflow holds out a seeded
  10% of the training rows for validation, so it trains on 1294 rows; this script trains on the
  same number (the first 1294 training rows in a seeded shuffle). Dequantization
  u = (x + U[0,1)) / 17; the model sees u itself (no logit, no centring: ActNorm normalizes).
  NLL is reported for the integer data's continuous relaxation (subtracting 64 ln 17), in
  bits/dim = NLL / (64 ln 2); the test set is evaluated with one fixed noise draw.
- Glow, L = 2 levels of K = 8 steps, 64 hidden channels. Level l: squeeze [C, H, W] ->
  [4C, H/2, W/2] (z[4c + 2dy + dx, i, j] = x[c, 2i + dy, 2j + dx]), K steps of
  * ActNorm z = (x + b) * exp(logs) per channel, log-det H W sum(logs), initialized on the first
    training batch: b = -mean, logs = -ln(std + 1e-6) (population std over batch and pixels);
  * LU 1x1 convolution W = P L (U + diag(sign exp(log_s))), log-det H W sum(log_s), initialized
    from the LU factorization (partial pivoting) of a random rotation (QR of a Gaussian matrix,
    columns signed so that R has a positive diagonal);
  * affine coupling: x_A = first C/2 channels, (h, t) = NN(x_A) with NN = conv3x3(C/2 -> 64),
    ReLU, conv1x1(64 -> 64), ReLU, conv3x3(64 -> C) zero-initialized (PyTorch default init for
    the others), output channels 0..C/2 are h and C/2..C are t;
    z_B = x_B * sigmoid(h + 2) + t, log-det sum log sigmoid(h + 2);
  then (all levels but the last) a split: rest = first C/2 channels, z_out = the others, scored by
  N(mean, exp(logs)^2) with (mean, logs) = chunk(conv3x3(rest), 2) zero-initialized. The final
  latent [8, 2, 2] is scored by a learned diagonal Gaussian (mean and log std per element,
  starting at N(0, I)).
- Adam (betas 0.9, 0.999, eps 1e-8) lr 1e-3, linear warmup over 2% of the steps then cosine decay
  to 1%, gradient-norm clipping at 100, batch 64, 20 epochs (20 steps each: 400 steps), float64 by default (--dtype float32 for the f32 comparison),
  one thread.

Install and run (never run by CI):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benches/peers/torch_glow_digits.py --threads 1

Prints one JSON object: test NLL and bits/dim, and training throughput (samples/s over the
optimizer steps only).
"""

import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "models", "data", "digits.csv.gz")
LEVELS = 17
ACTNORM_EPS = 1e-6
HALF_LN_2PI = 0.5 * math.log(2 * math.pi)


def load():
    rows = np.loadtxt(gzip.open(DATA, "rt"), delimiter=",", dtype=np.float64)
    x = rows[:, :64].reshape(-1, 1, 8, 8)
    test = np.arange(len(x)) % 5 == 4
    return x[~test], x[test]


def squeeze(x):
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialized", torch.zeros(1))

    def forward(self, x):
        if self.training and self.initialized.item() == 0:
            with torch.no_grad():
                mean = x.mean(dim=(0, 2, 3), keepdim=True)
                std = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
                self.bias.copy_(-mean)
                self.logs.copy_(-torch.log(std + ACTNORM_EPS))
                self.initialized.fill_(1)
        z = (x + self.bias) * torch.exp(self.logs)
        return z, x.shape[2] * x.shape[3] * self.logs.sum()


def random_rotation(c):
    q, r = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(c, dtype=torch.float64))


class Conv1x1LU(nn.Module):
    def __init__(self, c):
        super().__init__()
        p, l, u = torch.linalg.lu(random_rotation(c))  # W = P L U
        d = torch.diagonal(u)
        self.register_buffer("p", p)
        self.register_buffer("sign", torch.sign(d))
        self.register_buffer("lmask", torch.tril(torch.ones(c, c, dtype=torch.float64), -1))
        self.register_buffer("eye", torch.eye(c, dtype=torch.float64))
        self.lower = nn.Parameter(l * self.lmask)
        self.upper = nn.Parameter(torch.triu(u, 1))
        self.log_s = nn.Parameter(torch.log(d.abs()))

    def forward(self, x):
        lo = self.lower * self.lmask + self.eye
        up = self.upper * self.lmask.T + torch.diag(self.sign * torch.exp(self.log_s))
        w = self.p @ lo @ up
        z = F.conv2d(x, w.unsqueeze(-1).unsqueeze(-1))
        return z, x.shape[2] * x.shape[3] * self.log_s.sum()


def zero_conv(cin, cout):
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class Coupling(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.ca = c // 2
        self.net = nn.Sequential(
            nn.Conv2d(self.ca, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            zero_conv(hidden, 2 * (c - self.ca)),
        )

    def forward(self, x):
        xa, xb = x[:, :self.ca], x[:, self.ca:]
        h, t = self.net(xa).chunk(2, dim=1)
        s = F.logsigmoid(h + 2.0)
        z = torch.cat([xa, xb * torch.exp(s) + t], dim=1)
        return z, s.flatten(1).sum(dim=1)


def gaussian_log_prob(z, mean, logs):
    u = (z - mean) * torch.exp(-logs)
    return (-HALF_LN_2PI - logs - 0.5 * u * u).flatten(1).sum(dim=1)


class Glow(nn.Module):
    def __init__(self, shape=(1, 8, 8), levels=2, steps=8, hidden=64):
        super().__init__()
        c, h, w = shape
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        for level in range(levels):
            c, h, w = 4 * c, h // 2, w // 2
            self.levels.append(nn.ModuleList(
                [m for _ in range(steps) for m in (ActNorm(c), Conv1x1LU(c), Coupling(c, hidden))]))
            if level + 1 < levels:
                self.priors.append(zero_conv(c // 2, c))
                c //= 2
        self.top_mean = nn.Parameter(torch.zeros(1, c, h, w))
        self.top_logs = nn.Parameter(torch.zeros(1, c, h, w))

    def log_prob(self, x):
        lp = torch.zeros(x.shape[0], dtype=x.dtype)
        for level, steps in enumerate(self.levels):
            x = squeeze(x)
            for layer in steps:
                x, ld = layer(x)
                lp = lp + ld
            if level < len(self.priors):
                half = x.shape[1] // 2
                rest, z_out = x[:, :half], x[:, half:]
                mean, logs = self.priors[level](rest).chunk(2, dim=1)
                lp = lp + gaussian_log_prob(z_out, mean, logs)
                x = rest
        return lp + gaussian_log_prob(x, self.top_mean, self.top_logs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training rows")
    p.add_argument("--batch-size", type=int, default=64, help="samples per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--levels", type=int, default=2, help="L")
    p.add_argument("--steps-per-level", type=int, default=8, help="K")
    p.add_argument("--hidden", type=int, default=64, help="coupling network channels")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="precision of the model and the data (every peer trains in float32)")
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train, test = load()
    train = torch.tensor(train[rng.permutation(len(train))[:1294]]).to(dtype)
    test_u = torch.tensor((test + rng.random(test.shape)) / LEVELS).to(dtype)
    flow = Glow(levels=a.levels, steps=a.steps_per_level, hidden=a.hidden).to(dtype)
    n_params = sum(q.numel() for q in flow.parameters())
    opt = torch.optim.Adam(flow.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    per_epoch = len(train) // a.batch_size
    total = per_epoch * a.epochs
    warmup = total // 50

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        prog = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    flow.train()
    step_time = 0.0
    last_epoch_loss = float("nan")
    for _ in range(a.epochs):
        perm = torch.randperm(len(train))
        losses = []
        for b in range(per_epoch):
            x = train[perm[b * a.batch_size:(b + 1) * a.batch_size]]
            u = (x + torch.rand_like(x)) / LEVELS
            t0 = time.perf_counter()
            loss = -flow.log_prob(u).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
            opt.step()
            sched.step()
            step_time += time.perf_counter() - t0
            losses.append(loss.item() + 64 * math.log(LEVELS))
        last_epoch_loss = sum(losses) / len(losses)
    flow.eval()
    with torch.no_grad():
        nll = -(flow.log_prob(test_u) - 64 * math.log(LEVELS)).mean().item()
    print(json.dumps({
        "framework": f"torch {torch.__version__}",
        "dtype": a.dtype,
        "model": "glow",
        "levels": a.levels,
        "K": a.steps_per_level,
        "hidden": a.hidden,
        "trainable_params": n_params,
        "threads": a.threads,
        "epochs": a.epochs,
        "steps": total,
        "batch_size": a.batch_size,
        "train_nll_last_epoch": last_epoch_loss,
        "test_nll": nll,
        "test_bits_per_dim": nll / (64 * math.log(2)),
        "samples_per_sec": total * a.batch_size / step_time,
        "train_seconds": step_time,
    }))


if __name__ == "__main__":
    main()
