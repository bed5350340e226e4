#!/usr/bin/env python3
"""Rebuilds an exactflow MAF, IAF or neural spline flow checkpoint in PyTorch from FORMAT.md
alone, and scores data with it: the check that FORMAT.md is a complete specification of these
models.

    python3 -m venv /tmp/rebuild-venv && /tmp/rebuild-venv/bin/pip install torch numpy safetensors
    exactflow train --model nsf --data moons --steps 200 --out runs/nsf
    python -c "import numpy as np; np.save('x.npy', np.random.default_rng(0).uniform(-4, 4, (600, 2)))"
    for s in train val test; do exactflow eval runs/nsf --data npy:x.npy --split $s --per-sample ll-$s.npy; done
    /tmp/rebuild-venv/bin/python benches/peers/rebuild_from_format.py runs/nsf/model.safetensors x.npy ll-*.npy

`log p(x)` is computed in float64 for every row of x.npy. exactflow's per-sample values for the
splits of that file are matched to the rows they came from (each to the nearest rebuilt value:
the splits shuffle the rows) and the largest difference is printed, absolute and relative to
`max(1, |log p|)`; it should be around 1e-13 relative.
Written from FORMAT.md's "Stages of the autoregressive and spline models" and the tables it
refers to, not from exactflow's code.
"""

import json
import math
import sys

import numpy as np
import torch
from safetensors import safe_open

torch.set_default_dtype(torch.float64)


def logit(x, alpha):
    y = alpha + (1 - 2 * alpha) * x
    z = torch.log(y) - torch.log1p(-y)
    ld = (math.log(1 - 2 * alpha) - torch.log(y) - torch.log1p(-y)).sum(1)
    return z, ld


def permute(x, perm):
    return x[:, perm], torch.zeros(x.shape[0])


def lu_linear(x, t, p):
    lower, upper, log_s = t[p + "lower"], t[p + "upper"], t[p + "log_s"]
    sign, perm = t[p + "sign"], t[p + "perm"]
    d = lower.shape[0]
    l_ = torch.tril(lower, -1) + torch.eye(d)
    u_ = torch.triu(upper, 1) + torch.diag(sign.double() * torch.exp(log_s))
    lu = l_ @ u_
    w = torch.zeros_like(lu)
    w[perm.long()] = lu  # row perm[i] of W is row i of L U'
    return x @ w.T, torch.full((x.shape[0],), log_s.sum().item())


def made_masks(d, widths, parts):
    deg_in = torch.arange(1, d + 1)
    masks, prev = [], deg_in
    for w in widths:
        deg = torch.arange(w) % max(1, d - 1) + min(1, d - 1)
        masks.append((deg[:, None] >= prev[None, :]).double())
        prev = deg
    out = torch.arange(parts * d) % d + 1
    masks.append((out[:, None] > prev[None, :]).double())
    return masks


def made(x, t, p, d, widths, parts, residual_blocks):
    masks = made_masks(d, widths, parts)
    h = x
    for l in range(len(widths)):
        h = torch.relu(h @ (t[f"{p}net.{l}.weight"] * masks[l]).T + t[f"{p}net.{l}.bias"])
    for b in range(residual_blocks):
        m = masks[len(widths) - 1]
        mid = torch.relu(h @ (t[f"{p}net.blocks.{b}.0.weight"] * m).T + t[f"{p}net.blocks.{b}.0.bias"])
        h = h + mid @ (t[f"{p}net.blocks.{b}.1.weight"] * m).T + t[f"{p}net.blocks.{b}.1.bias"]
    return h @ (t[f"{p}net.out.weight"] * masks[-1]).T + t[f"{p}net.out.bias"]


def affine_phi(u, t, p, cfg):
    d = cfg["dim"]
    out = made(u, t, p, d, cfg["hidden"], 2, cfg.get("residual_blocks", 0))
    h, sh = out[:, :d], out[:, d:2 * d]
    s = t[p + "scale"] * torch.tanh(h)
    return u * torch.exp(s) + sh, s.sum(1), (s, sh)


def maf_layer(x, t, p, cfg):
    z, ld, _ = affine_phi(x, t, p, cfg)
    return z, ld


def iaf_layer(x, t, p, cfg):
    # Solve Phi(z) = x: D passes from z = 0.
    z = torch.zeros_like(x)
    for _ in range(cfg["dim"]):
        _, _, (s, sh) = affine_phi(z, t, p, cfg)
        z = (x - sh) * torch.exp(-s)
    _, ld, _ = affine_phi(z, t, p, cfg)
    return z, -ld


def spline(x, params, sp):
    """Rational-quadratic spline elementwise: x [M], params [M, 3K - 1] ([uw | uh | ud])."""
    k, b = sp["bins"], sp["tail_bound"]
    mw, mh, md = sp["min_bin_width"], sp["min_bin_height"], sp["min_derivative"]
    uw, uh, ud = params[:, :k], params[:, k:2 * k], params[:, 2 * k:]
    w = mw + (1 - k * mw) * torch.softmax(uw, 1)
    h = mh + (1 - k * mh) * torch.softmax(uh, 1)
    xs = torch.cat([torch.zeros(len(x), 1), torch.cumsum(w, 1)], 1) * 2 * b - b
    ys = torch.cat([torch.zeros(len(x), 1), torch.cumsum(h, 1)], 1) * 2 * b - b
    xs[:, 0], xs[:, -1], ys[:, 0], ys[:, -1] = -b, b, -b, b
    beta = math.log(2) / (1 - md)
    dint = md + torch.nn.functional.softplus(beta * ud) / beta
    ones = torch.ones(len(x), 1)
    ds = torch.cat([ones, dint, ones], 1)
    inside = (x > -b) & (x < b)
    z, ld = x.clone(), torch.zeros_like(x)
    xi = x[inside]
    xk = xs[inside]
    kk = (torch.sum(xk[:, 1:-1] <= xi[:, None], 1)).long()
    idx = torch.arange(len(xi))
    x0, x1 = xk[idx, kk], xk[idx, kk + 1]
    y0, y1 = ys[inside][idx, kk], ys[inside][idx, kk + 1]
    d0, d1 = ds[inside][idx, kk], ds[inside][idx, kk + 1]
    wb, hb = x1 - x0, y1 - y0
    s = hb / wb
    th = (xi - x0) / wb
    tau = th * (1 - th)
    den = s + (d0 + d1 - 2 * s) * tau
    z[inside] = y0 + hb * (s * th ** 2 + d0 * tau) / den
    ld[inside] = torch.log(s ** 2 * (d1 * th ** 2 + 2 * s * tau + d0 * (1 - th) ** 2)) - 2 * torch.log(den)
    return z, ld


def mlp(x, t, p, n_linear):
    h = x
    for j in range(n_linear):
        h = h @ t[f"{p}net.{j}.weight"].T + t[f"{p}net.{j}.bias"]
        if j < n_linear - 1:
            h = torch.relu(h)
    return h


def nsf_coupling(x, t, p, cfg, k):
    d = cfg["dim"]
    idx = torch.arange(d)
    a = idx < d // 2 if cfg["mask"] == "halves" else idx % 2 == 0
    if k % 2 == 1:
        a = ~a
    ai, bi = idx[a], idx[~a]
    nb = len(bi)
    out = mlp(x[:, ai], t, p, len(cfg["hidden"]) + 1)
    prm = out.view(len(x), -1, nb).transpose(1, 2).reshape(-1, 3 * cfg["spline"]["bins"] - 1)
    zb, ld = spline(x[:, bi].reshape(-1), prm, cfg["spline"])
    z = x.clone()
    z[:, bi] = zb.view(len(x), nb)
    return z, ld.view(len(x), nb).sum(1)


def nsf_autoregressive(x, t, p, cfg):
    d, parts = cfg["dim"], 3 * cfg["spline"]["bins"] - 1
    out = made(x, t, p, d, cfg["hidden"], parts, 0)
    prm = out.view(len(x), parts, d).transpose(1, 2).reshape(-1, parts)
    z, ld = spline(x.reshape(-1), prm, cfg["spline"])
    return z.view(len(x), d), ld.view(len(x), d).sum(1)


def log_prob(x, t, cfg):
    total = torch.zeros(x.shape[0])
    i = 0

    def step(fn):
        nonlocal x, total, i
        x, ld = fn(x, f"flow.{i}.")
        total = total + ld
        i += 1

    if cfg.get("logit_alpha") is not None:
        step(lambda x, p: logit(x, cfg["logit_alpha"]))
    for k in range(cfg["layers"]):
        if cfg["model"] in ("maf", "iaf"):
            if cfg["permutation"] != "none":
                step(lambda x, p: permute(x, t[p + "perm"].long()))
            layer = maf_layer if cfg["model"] == "maf" else iaf_layer
            step(lambda x, p: layer(x, t, p, cfg))
        else:
            step(lambda x, p: lu_linear(x, t, p))
            if cfg["transform"] == "coupling":
                step(lambda x, p, k=k: nsf_coupling(x, t, p, cfg, k))
            else:
                step(lambda x, p: nsf_autoregressive(x, t, p, cfg))
    base = -0.5 * (x ** 2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
    return total + base


def main():
    ckpt, data, *lls = sys.argv[1:]
    with safe_open(ckpt, "pt") as f:
        cfg = json.loads(f.metadata()["exactflow.config"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    t = {k: (v.double() if v.is_floating_point() else v) for k, v in t.items()}
    x = torch.tensor(np.load(data), dtype=torch.float64)
    with torch.no_grad():
        ours = log_prob(x, t, cfg).numpy()
    theirs = np.concatenate([np.load(p) for p in lls])
    diffs = [np.min(np.abs(ours - v)) for v in theirs]
    rel = [d / max(1.0, abs(v)) for d, v in zip(diffs, theirs)]
    print(json.dumps({"model": cfg["model"], "rows": len(ours), "matched": len(theirs),
                      "max_abs_diff": float(max(diffs)), "max_rel_diff": float(max(rel)),
                      "mean_log_p": float(ours.mean())}))


if __name__ == "__main__":
    main()
