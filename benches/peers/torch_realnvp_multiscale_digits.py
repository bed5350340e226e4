#!/usr/bin/env python3
"""PyTorch peer of `exactflow train --model realnvp --data digits-image` (BENCHMARKS.md).

The same architecture as exactflow's multi-scale `realnvp digits-image` preset
(models/src/multiscale.rs), the same data convention and budget as benches/peers/torch_digits.py:

- data: the embedded 8x8 UCI digits (models/data/digits.csv.gz) as [1, 8, 8] images, 17 levels;
  0-based row i is test when i % 5 == 4 (359 rows), the rest train. exactflow holds out a seeded
  10% of the training rows for validation, so it trains on 1294 rows; this script trains on the
  same number (the first 1294 training rows in a seeded shuffle). Dequantization
  u = (x + U[0,1)) / 17, logit preprocessing y = logit(0.05 + 0.9 u) with its log-det. NLL is
  reported for the integer data's continuous relaxation (subtracting 64 ln 17), in
  bits/dim = NLL / (64 ln 2); the test set is evaluated with one fixed noise draw.
- 2 scales. Scale 0 on [1, 8, 8]: 3 affine couplings with checkerboard masks (A = pixels with
  h + w even, then flipped, then not), a squeeze to [4, 4, 4] (z[4c + 2dy + dx, i, j] =
  x[c, 2i + dy, 2j + dx]), 3 affine couplings with channel masks (A = first half of the channels,
  then the second, then the first), a split: the last 2 channels leave, scored by N(0, I).
  Scale 1 on [2, 4, 4]: 4 checkerboard couplings (alternating, starting unflipped). A batch norm
  layer follows every coupling. Standard normal base on the final [2, 4, 4].
- Affine coupling: z_B = x_B * exp(s) + t with s = scale * tanh(h), `scale` a learned vector with
  one entry per transformed element (init 1); log-det sum_B s. (h, t) from a pre-activation
  ResNet: conv3x3(in -> 32), 2 residual blocks h + conv3x3(ReLU(conv3x3(ReLU(h)))), ReLU,
  conv3x3(32 -> 2 C_B) zero-initialized (PyTorch default init for the others); output channels
  0..C_B are h, C_B..2 C_B are t. Checkerboard: the conditioner sees the whole image with B
  zeroed and its outputs are read at the B pixels; channel masks: it sees the A channels.
- Batch norm (exactflow's BatchNorm): z = exp(log_gamma) (x - mu) / sqrt(var + 1e-5) + beta per
  channel; training uses the batch mean and biased variance (gradients flow through them) and
  the log-det H W sum(log_gamma - ln(var + eps) / 2); running statistics with momentum 0.1 (the
  unbiased variance), used for evaluation.
- Adam (betas 0.9, 0.999, eps 1e-8) lr 1e-3, linear warmup over 2% of the steps then cosine decay
  to 1%, gradient-norm clipping at 100, batch 64, 20 epochs (20 steps each: 400 steps), float64 by default (--dtype float32 for the f32 comparison),
  one thread.

Install and run (never run by CI):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benches/peers/torch_realnvp_multiscale_digits.py --threads 1

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
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "models", "data", "digits.csv.gz")
ALPHA = 0.05
LEVELS = 17
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
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


def logit(u):
    v = ALPHA + (1 - 2 * ALPHA) * u
    one_minus_v = ALPHA + (1 - 2 * ALPHA) * (1 - u)
    z = torch.log(v) - torch.log(one_minus_v)
    ld = (math.log(1 - 2 * ALPHA) - torch.log(v) - torch.log(one_minus_v)).flatten(1).sum(dim=1)
    return z, ld


class ResNet(nn.Module):
    def __init__(self, cin, cout, features, blocks):
        super().__init__()
        self.conv_in = nn.Conv2d(cin, features, 3, padding=1)
        self.blocks = nn.ModuleList([
            nn.ModuleList([nn.Conv2d(features, features, 3, padding=1), nn.Conv2d(features, features, 3, padding=1)])
            for _ in range(blocks)])
        self.conv_out = nn.Conv2d(features, cout, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x):
        h = self.conv_in(x)
        for c1, c2 in self.blocks:
            h = h + c2(torch.relu(c1(torch.relu(h))))
        return self.conv_out(torch.relu(h))


class CheckerboardCoupling(nn.Module):
    def __init__(self, shape, flip, features, blocks):
        super().__init__()
        c, h, w = shape
        a = (torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)) % 2 == 0
        if flip:
            a = ~a
        a = a.to(torch.float64).expand(c, h, w).clone()
        self.register_buffer("amask", a)
        self.register_buffer("bmask", 1 - a)
        self.c = c
        self.net = ResNet(c, 2 * c, features, blocks)
        # one entry per transformed element; the entries at A pixels are never used
        self.scale = nn.Parameter(torch.ones(c, h, w))

    def forward(self, x):
        out = self.net(x * self.amask)
        h, t = out[:, :self.c], out[:, self.c:]
        s = self.scale * torch.tanh(h) * self.bmask
        z = x * torch.exp(s) + t * self.bmask
        return z, s.flatten(1).sum(dim=1)


class ChannelCoupling(nn.Module):
    def __init__(self, shape, flip, features, blocks):
        super().__init__()
        c, h, w = shape
        self.half = c // 2
        self.flip = flip
        ca = c - self.half if flip else self.half
        cb = c - ca
        self.cb = cb
        self.net = ResNet(ca, 2 * cb, features, blocks)
        self.scale = nn.Parameter(torch.ones(cb, h, w))

    def forward(self, x):
        first, second = x[:, :self.half], x[:, self.half:]
        xa, xb = (second, first) if self.flip else (first, second)
        out = self.net(xa)
        h, t = out[:, :self.cb], out[:, self.cb:]
        s = self.scale * torch.tanh(h)
        zb = xb * torch.exp(s) + t
        z = torch.cat([zb, xa] if self.flip else [xa, zb], dim=1)
        return z, s.flatten(1).sum(dim=1)


class BatchNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("running_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("running_var", torch.ones(1, c, 1, 1))

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
            with torch.no_grad():
                m = x.shape[0] * x.shape[2] * x.shape[3]
                self.running_mean.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean)
                self.running_var.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * var * m / (m - 1))
        else:
            mean, var = self.running_mean, self.running_var
        z = torch.exp(self.log_gamma) * (x - mean) / torch.sqrt(var + BN_EPS) + self.beta
        ld = x.shape[2] * x.shape[3] * (self.log_gamma - 0.5 * torch.log(var + BN_EPS)).sum()
        return z, ld


def normal_log_prob(z):
    return (-HALF_LN_2PI - 0.5 * z * z).flatten(1).sum(dim=1)


class MultiScaleRealNVP(nn.Module):
    def __init__(self, shape=(1, 8, 8), scales=2, blocks=2, features=32):
        super().__init__()
        self.scales = nn.ModuleList()
        c, h, w = shape

        def couplings(kind, n, shp):
            mods = []
            for k in range(n):
                mods.append(kind(shp, k % 2 == 1, features, blocks))
                mods.append(BatchNorm(shp[0]))
            return mods

        for s in range(scales):
            if s + 1 == scales:
                self.scales.append(nn.ModuleList(couplings(CheckerboardCoupling, 4, (c, h, w))))
                break
            mods = couplings(CheckerboardCoupling, 3, (c, h, w))
            c, h, w = 4 * c, h // 2, w // 2
            mods.append(None)  # squeeze marker, replaced below
            mods += couplings(ChannelCoupling, 3, (c, h, w))
            self.scales.append(nn.ModuleList([m if m is not None else nn.Identity() for m in mods]))
            c //= 2

    def log_prob(self, u):
        x, lp = logit(u)
        for s, mods in enumerate(self.scales):
            for m in mods:
                if isinstance(m, nn.Identity):
                    x = squeeze(x)
                    continue
                x, ld = m(x)
                lp = lp + ld
            if s + 1 < len(self.scales):
                half = x.shape[1] // 2
                x, z_out = x[:, :half], x[:, half:]
                lp = lp + normal_log_prob(z_out)
        return lp + normal_log_prob(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    train = torch.tensor(train[rng.permutation(len(train))[:1294]]).to(dtype)
    test_u = torch.tensor((test + rng.random(test.shape)) / LEVELS).to(dtype)
    flow = MultiScaleRealNVP().to(dtype)
    n_params = sum(q.numel() for q in flow.parameters())
    # exactflow's checkerboard `scale` has entries for the B pixels only
    unused = sum(int(m.amask.sum()) for m in flow.modules() if isinstance(m, CheckerboardCoupling))
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
        "model": "realnvp-multiscale",
        "trainable_params": n_params - unused,
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
