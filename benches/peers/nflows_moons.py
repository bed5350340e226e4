#!/usr/bin/env python3
"""nflows peer of `flow_moons` (benches/src/bin/flow_moons.rs): MAF and neural spline flows on two
moons, built from nflows' own transforms, with the configuration of exactflow's presets.

- maf: 10 layers, each a permutation (a fixed random one for even layers, the reversal for odd
  ones: nflows' RandomPermutation / ReversePermutation) then nflows'
  MaskedAffineAutoregressiveTransform(features=2, hidden_features=256, num_blocks=1,
  use_residual_blocks=False): a MADE with two masked hidden layers of 256 (ReLU).
- iaf: the maf layers with every autoregressive transform inverted (nflows'
  InverseTransform(MaskedAffineAutoregressiveTransform(...))): sampling is one MADE pass per
  layer, scoring solves for the latent with D = 2 passes per layer. The permutations stay as in
  maf, which is how exactflow's iaf preset is built.
- nsf-coupling: 8 layers, each nflows' LULinear(2, identity_init=True) with its bias frozen at 0
  (exactflow's LU linear layer has none) then PiecewiseRationalQuadraticCouplingTransform with
  the mask alternating between "first half conditions" and "second half conditions", an MLP
  1 -> 128 -> 128 -> 23 (ReLU, last layer zero-initialized as in exactflow), num_bins=8,
  tails="linear", tail_bound=3.
- nsf-autoregressive: 8 layers, LULinear as above, then
  MaskedPiecewiseRationalQuadraticAutoregressiveTransform(features=2, hidden_features=128,
  num_blocks=1, use_residual_blocks=False, num_bins=8, tails="linear", tail_bound=3).

Standard normal base. The elementwise parametrizations are nflows' own and differ from
exactflow's in the details that do not change the architecture: nflows' affine MAF layer is
`x * (softplus(u) + 1e-3) + t` where exactflow's is `x * exp(scale * tanh(h)) + t`; nflows'
spline derivatives are `1e-3 + softplus(u)` (so a zero conditioner output is not the identity)
where exactflow's are `1e-3 + softplus(beta u) / beta` with `beta = ln 2 / (1 - 1e-3)`;
nflows' MADE output layer keeps PyTorch's default initialization.

Data: two moons with Gaussian noise 0.05 (scikit-learn's geometry, numpy's generator), 20,000
training and 5,000 validation points. Training: Adam (0.9, 0.999, eps 1e-8), batch 512, 2000
steps, learning rate 5e-4 after a linear warmup over 2% of the steps, cosine decay to 1% of it,
gradient-norm clipping at 100: exactflow's schedule. Then `log_prob` of a 512-batch and
`sample(512)` are timed 50 times each under `torch.no_grad()`; the medians are printed.

Install and run (never run by CI):

    python3 -m venv /tmp/nflows-venv && /tmp/nflows-venv/bin/pip install torch numpy nflows
    /tmp/nflows-venv/bin/python benches/peers/nflows_moons.py --model maf --threads 1
    /tmp/nflows-venv/bin/python benches/peers/nflows_moons.py --model nsf-coupling --threads 1

Prints one JSON object with the keys of flow_moons: samples_per_sec (optimizer steps only),
validation_nll, log_prob_ms_per_512, sample_ms_per_512.
"""

import argparse
import json
import math
import time
import warnings

import numpy as np
import torch
from torch import nn

from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.transforms.autoregressive import (
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
)
from nflows.transforms.base import CompositeTransform, InverseTransform
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.lu import LULinear
from nflows.transforms.permutations import RandomPermutation, ReversePermutation


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
    return torch.tensor(x)


class Mlp(nn.Module):
    """in -> 128 -> 128 -> out with ReLU and a zero last layer; nflows passes a context too."""

    def __init__(self, inp, out, hidden=(128, 128)):
        super().__init__()
        widths = [inp, *hidden, out]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, x, context=None):
        return self.net(x)


def lu_linear(features):
    lu = LULinear(features, identity_init=True)
    lu.bias.requires_grad_(False)
    return lu


def build(model):
    layers = []
    if model == "maf":
        for k in range(10):
            layers.append(RandomPermutation(2) if k % 2 == 0 else ReversePermutation(2))
            layers.append(MaskedAffineAutoregressiveTransform(
                features=2, hidden_features=256, num_blocks=1, use_residual_blocks=False))
    elif model == "iaf":
        for k in range(10):
            layers.append(RandomPermutation(2) if k % 2 == 0 else ReversePermutation(2))
            layers.append(InverseTransform(MaskedAffineAutoregressiveTransform(
                features=2, hidden_features=256, num_blocks=1, use_residual_blocks=False)))
    elif model == "nsf-coupling":
        for k in range(8):
            layers.append(lu_linear(2))
            mask = [0, 1] if k % 2 == 0 else [1, 0]
            layers.append(PiecewiseRationalQuadraticCouplingTransform(
                mask=torch.tensor(mask), transform_net_create_fn=lambda i, o: Mlp(i, o),
                num_bins=8, tails="linear", tail_bound=3.0))
    elif model == "nsf-autoregressive":
        for _ in range(8):
            layers.append(lu_linear(2))
            layers.append(MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features=2, hidden_features=128, num_blocks=1, use_residual_blocks=False,
                num_bins=8, tails="linear", tail_bound=3.0))
    else:
        raise SystemExit(f"unknown model {model}")
    return Flow(CompositeTransform(layers), StandardNormal([2]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="maf", help="maf, iaf, nsf-coupling or nsf-autoregressive")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=512, help="samples per step")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of data, init and batches")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="precision")
    p.add_argument("--repeats", type=int, default=50, help="timings of log_prob and sample")
    a = p.parse_args()
    warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled down")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    dtype = getattr(torch, a.dtype)
    train = make_moons(20000, 0.05, rng).to(dtype)
    val = make_moons(5000, 0.05, rng).to(dtype)
    flow = build(a.model).to(dtype)
    params = [q for q in flow.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
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
    for _ in range(a.steps):
        if pos + a.batch_size > n:
            perm = torch.randperm(n)
            pos = 0
        batch = train[perm[pos:pos + a.batch_size]]
        pos += a.batch_size
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = -flow.log_prob(batch).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        opt.step()
        sched.step()
        step_time += time.perf_counter() - t0
    flow.eval()
    with torch.no_grad():
        val_nll = -torch.cat([flow.log_prob(c) for c in val.split(1024)]).mean().item()
        b = val[:512]
        lp_ms, s_ms = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            flow.log_prob(b)
            lp_ms.append((time.perf_counter() - t0) * 1e3)
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            flow.sample(512)
            s_ms.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({
        "framework": f"nflows 0.14, torch {torch.__version__}",
        "model": a.model,
        "precision": a.dtype,
        "threads": a.threads,
        "steps": a.steps,
        "batch_size": a.batch_size,
        "lr": a.lr,
        "seed": a.seed,
        "samples_per_sec": a.steps * a.batch_size / step_time,
        "validation_nll": val_nll,
        "log_prob_ms_per_512": float(np.median(lp_ms)),
        "sample_ms_per_512": float(np.median(s_ms)),
        "repeats": a.repeats,
    }))


if __name__ == "__main__":
    main()
