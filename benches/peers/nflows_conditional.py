#!/usr/bin/env python3
"""nflows peer of exactflow's conditional NSF on the linear-Gaussian simulators, with sbi's default
density estimator: 5 transforms, each nflows' PiecewiseRationalQuadraticCouplingTransform (mask
alternating, conditioner nflows' ResidualNet(in, out, hidden_features=50, context_features=d,
num_blocks=2, ReLU), num_bins=10, tails="linear", tail_bound=3) followed by
LULinear(d, identity_init=True); standard normal base; no z-scoring (exactflow does none either).

Tasks (the formulas of exactflow_models::data::sim, numpy's generator):
- gaussian-linear: theta ~ N(0, I_2), x = A theta + 0.3 eps, A = [[1, 0.5], [-0.3, 0.8]];
- gaussian-linear-10: theta ~ N(0, I_10), x = A theta + 0.5 eps, A_ij = delta_ij + 0.3 cos(1 + i + 2j).
20,000 training pairs. Training as `exactflow train`'s defaults: Adam (0.9, 0.999, 1e-8), batch 512,
2000 steps, learning rate 1e-3 after a linear warmup over 2% of the steps, cosine decay to 1% of it,
gradient-norm clipping at 100, float32.

Then the exact-posterior check of `exactflow eval` (exactflow_models::posterior): at 100 held-out
observations x_j (from the joint), 1000 exact posterior draws each: KL_j = mean(log p - log q), and
the coverage of the flow's 50% / 90% HPD regions (threshold: the (1 - a)-quantile of log q over 1000
flow draws); means over observations with standard errors. Log-densities are evaluated in float64.

Run (never run by CI):

    /path/to/venv/bin/python benches/peers/nflows_conditional.py --task gaussian-linear --threads 1

Prints one JSON object: samples_per_sec (optimizer steps only), kl, kl_stderr, coverage.
"""

import argparse
import json
import math
import time
import warnings

import numpy as np
import torch

from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.nn.nets import ResidualNet
from nflows.transforms.base import CompositeTransform
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.lu import LULinear


def task(name):
    if name == "gaussian-linear":
        return np.array([[1.0, 0.5], [-0.3, 0.8]]), 0.3
    if name == "gaussian-linear-10":
        d = 10
        a = np.array([[float(i == j) + 0.3 * math.cos(1 + i + 2 * j) for j in range(d)] for i in range(d)])
        return a, 0.5
    raise SystemExit(f"unknown task {name}")


def simulate(a, sigma, n, rng):
    theta = rng.normal(size=(n, a.shape[0]))
    x = theta @ a.T + sigma * rng.normal(size=theta.shape)
    return theta, x


def posterior(a, sigma, x):
    """N(mu, S): P = I + A^T A / sigma^2, S = P^-1, mu = S A^T x / sigma^2."""
    p = np.eye(a.shape[0]) + a.T @ a / sigma**2
    s = np.linalg.inv(p)
    return s @ a.T @ x / sigma**2, s, p


def build(d):
    layers = []
    for k in range(5):
        mask = np.ones(d)
        mask[k % 2::2] = -1  # nflows: > 0 transformed, <= 0 identity
        layers.append(PiecewiseRationalQuadraticCouplingTransform(
            mask=torch.tensor(mask),
            transform_net_create_fn=lambda i, o: ResidualNet(
                i, o, hidden_features=50, context_features=d, num_blocks=2, activation=torch.relu),
            num_bins=10, tails="linear", tail_bound=3.0, apply_unconditional_transform=False))
        layers.append(LULinear(d, identity_init=True))
    return Flow(CompositeTransform(layers), StandardNormal([d]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="gaussian-linear", help="gaussian-linear or gaussian-linear-10")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pairs", type=int, default=20000)
    p.add_argument("--observations", type=int, default=100)
    p.add_argument("--posterior-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    warnings.filterwarnings("ignore", message="Inputs to the softmax are not scaled down")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    mat, sigma = task(a.task)
    d = mat.shape[0]
    theta, x = simulate(mat, sigma, a.pairs, rng)
    theta, x = torch.tensor(theta, dtype=torch.float32), torch.tensor(x, dtype=torch.float32)
    flow = build(d)
    opt = torch.optim.Adam(flow.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    warmup = a.steps // 50

    def lr_factor(step):
        if step < warmup:
            return (step + 1) / warmup
        prog = (step - warmup) / max(1, a.steps - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    n = a.pairs
    perm, pos, step_time = torch.randperm(n), 0, 0.0
    for _ in range(a.steps):
        if pos + a.batch_size > n:
            perm, pos = torch.randperm(n), 0
        idx = perm[pos:pos + a.batch_size]
        pos += a.batch_size
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = -flow.log_prob(theta[idx], context=x[idx]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
        opt.step()
        sched.step()
        step_time += time.perf_counter() - t0
    flow = flow.double().eval()
    _, obs = simulate(mat, sigma, a.observations, rng)
    k = a.posterior_samples
    kls, cov = [], {0.5: [], 0.9: []}
    with torch.no_grad():
        for xo in obs:
            mu, s, prec = posterior(mat, sigma, xo)
            draws = rng.multivariate_normal(mu, s, size=k)
            r = draws - mu
            log_p = (-0.5 * d * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(prec)[1]
                     - 0.5 * np.einsum("ij,jk,ik->i", r, prec, r))
            ctx = torch.tensor(np.tile(xo, (k, 1)))
            log_q = flow.log_prob(torch.tensor(draws), context=ctx).numpy()
            kls.append(float(np.mean(log_p - log_q)))
            _, lq_flow = flow.sample_and_log_prob(k, context=torch.tensor(xo[None, :]))
            lq_flow = np.sort(lq_flow.numpy().ravel())
            for level in cov:
                t = lq_flow[min(k - 1, int(math.floor((1 - level) * k)))]
                cov[level].append(float(np.mean(log_q >= t)))

    def mse(v):
        v = np.asarray(v)
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))

    kl, kl_se = mse(kls)
    print(json.dumps({
        "framework": f"nflows 0.14, torch {torch.__version__}",
        "task": a.task,
        "architecture": "sbi default NSF: 5 x (RQ coupling, ResidualNet 50 x 2 blocks, 10 bins, tail 3; LULinear)",
        "threads": a.threads,
        "steps": a.steps,
        "batch_size": a.batch_size,
        "pairs": a.pairs,
        "samples_per_sec": a.steps * a.batch_size / step_time,
        "kl": kl,
        "kl_stderr": kl_se,
        "coverage": {str(l): mse(v) for l, v in cov.items()},
        "observations": a.observations,
        "posterior_samples": k,
    }))


if __name__ == "__main__":
    main()
