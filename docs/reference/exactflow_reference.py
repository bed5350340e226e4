"""A reference evaluator of exactflow checkpoints, written from FORMAT.md alone, in numpy.

It reads a checkpoint (safetensors, parsed by hand; checksums verified when the file has them),
rebuilds the model the config describes and computes log p(x) per sample in float64, following
FORMAT.md's formulas, layouts and orders and nothing else. Run on the compatibility fixtures, it
checks that FORMAT.md is complete:

    python3 docs/reference/exactflow_reference.py            # every fixture in models/tests/fixtures
    python3 docs/reference/exactflow_reference.py CKPT X.npy # log p of the rows of X under CKPT

For a fixture NAME, `NAME.expected.safetensors` holds an input batch `x` and exactflow's `log_p`;
the script prints the largest difference and fails above 1e-9 (relative to 1 + |log p|). Needs
only numpy.
"""

import hashlib
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "I64": "<i8",
    "I32": "<i4",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "u1",
}
HALF_LN_2PI = 0.5 * math.log(2 * math.pi)


def read_safetensors(path):
    """(tensors as float64 or int64 arrays, metadata), checksums verified when present."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    sums = json.loads(meta["exactflow.sha256"]) if "exactflow.sha256" in meta else None
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        chunk = data[start:end]
        if sums is not None and hashlib.sha256(chunk).hexdigest() != sums[name]:
            raise ValueError(f"{path}: tensor {name} fails its SHA-256 check")
        a = np.frombuffer(chunk, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = a.astype(np.float64) if info["dtype"].startswith("F") else a.astype(np.int64)
    if sums is not None:
        for key in ("exactflow.config", "exactflow.train_state"):
            if key in meta and hashlib.sha256(meta[key].encode()).hexdigest() != sums[key]:
                raise ValueError(f"{path}: {key} fails its SHA-256 check")
    return tensors, meta


# --- building blocks (FORMAT.md, "Conventions") -------------------------------------------------


def activation(spec, x):
    if spec == "relu":
        return np.maximum(x, 0.0)
    if spec == "tanh":
        return np.tanh(x)
    if spec == "identity":
        return x
    if isinstance(spec, dict) and "leaky_relu" in spec:
        return np.where(x > 0, x, spec["leaky_relu"] * x)
    raise ValueError(f"unknown activation {spec!r}")


def mlp(T, prefix, x, act):
    """Linear -> act -> ... -> Linear; net.{j} counts the Linears."""
    j = 0
    while f"{prefix}.{j}.weight" in T:
        if j > 0:
            x = activation(act, x)
        x = x @ T[f"{prefix}.{j}.weight"].T + T[f"{prefix}.{j}.bias"]
        j += 1
    return x


def conv(x, w, b):
    """PyTorch Conv2d, stride 1, padding k // 2: x [N, Cin, H, W], w [Cout, Cin, k, k]."""
    k = w.shape[2]
    p = k // 2
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((n, w.shape[0], h, wd))
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, dy : dy + h, dx : dx + wd], w[:, :, dy, dx])
    return out + b[None, :, None, None]


def per_sample(v):
    return v.reshape(v.shape[0], -1).sum(axis=1)


def normal(z):
    return per_sample(-0.5 * z * z - HALF_LN_2PI)


def logistic(z):
    softplus = lambda v: np.logaddexp(0.0, v)  # noqa: E731
    return per_sample(-softplus(z) - softplus(-z))


def logit(x, alpha):
    v = alpha + (1 - 2 * alpha) * x
    one_minus = alpha + (1 - 2 * alpha) * (1 - x)
    z = np.log(v) - np.log(one_minus)
    return z, per_sample(math.log(1 - 2 * alpha) - np.log(v) - np.log(one_minus))


def batch_norm(T, pre, x):
    """Running statistics; per feature for [N, D], per channel for [N, C, H, W]."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    g, b = T[pre + "log_gamma"], T[pre + "beta"]
    m, v = T[pre + "running_mean"], T[pre + "running_var"]
    z = np.exp(g).reshape(shape) * (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + 1e-5) + b.reshape(shape)
    pixels = int(np.prod(x.shape[2:])) if x.ndim == 4 else 1
    return z, np.full(x.shape[0], pixels * np.sum(g - 0.5 * np.log(v + 1e-5)))


def squeeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def vector_mask(d, kind, flip):
    i = np.arange(d)
    a = i < d // 2 if kind in ("halves", "channel") else i % 2 == 0
    return a != flip


def affine_vector(T, pre, x, a_mask, act):
    xa, xb = x[:, a_mask], x[:, ~a_mask]
    nb = xb.shape[1]
    out = mlp(T, pre + "net", xa, act)
    h, t = out[:, :nb], out[:, nb:]
    s = T[pre + "scale"] * np.tanh(h)
    z = x.copy()
    z[:, ~a_mask] = xb * np.exp(s) + t
    return z, s.sum(axis=1)


def additive_vector(T, pre, x, a_mask, act):
    z = x.copy()
    z[:, ~a_mask] = x[:, ~a_mask] + mlp(T, pre + "net", x[:, a_mask], act)
    return z, np.zeros(x.shape[0])


def resnet(T, pre, x):
    h = conv(x, T[pre + "in.weight"], T[pre + "in.bias"])
    b = 0
    while f"{pre}blocks.{b}.conv1.weight" in T:
        u = conv(np.maximum(h, 0), T[f"{pre}blocks.{b}.conv1.weight"], T[f"{pre}blocks.{b}.conv1.bias"])
        h = h + conv(np.maximum(u, 0), T[f"{pre}blocks.{b}.conv2.weight"], T[f"{pre}blocks.{b}.conv2.bias"])
        b += 1
    return conv(np.maximum(h, 0), T[pre + "out.weight"], T[pre + "out.bias"])


def checkerboard_coupling(T, pre, x, flip):
    n, c, h, w = x.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    a_pix = ((yy + xx) % 2 == 0) != flip
    a = np.broadcast_to(a_pix, (c, h, w))
    out = resnet(T, pre + "net.", x * a)
    b_flat = ~a.reshape(-1)
    hb = out[:, :c].reshape(n, -1)[:, b_flat]
    tb = out[:, c:].reshape(n, -1)[:, b_flat]
    s = T[pre + "scale"] * np.tanh(hb)
    z = x.reshape(n, -1).copy()
    z[:, b_flat] = z[:, b_flat] * np.exp(s) + tb
    return z.reshape(x.shape), s.sum(axis=1)


def channel_coupling(T, pre, x, flip):
    n, c = x.shape[:2]
    a_ch = np.arange(c) < c // 2
    a_ch = a_ch != flip
    out = resnet(T, pre + "net.", x[:, a_ch])
    cb = int((~a_ch).sum())
    hb, tb = out[:, :cb].reshape(n, -1), out[:, cb:].reshape(n, -1)
    s = T[pre + "scale"] * np.tanh(hb)
    z = x.copy()
    z[:, ~a_ch] = (x[:, ~a_ch].reshape(n, -1) * np.exp(s) + tb).reshape(z[:, ~a_ch].shape)
    return z, s.sum(axis=1)


# --- models (FORMAT.md, "Models") -----------------------------------------------------------


def vector_log_prob(cfg, T, x):
    ld = np.zeros(x.shape[0])
    i = 0
    if cfg["logit_alpha"] is not None:
        x, l = logit(x, cfg["logit_alpha"])
        ld += l
        i += 1
    d = cfg["dim"]
    for k in range(cfg["couplings"]):
        a = vector_mask(d, cfg["mask"], k % 2 == 1)
        f = additive_vector if cfg["model"] == "nice" else affine_vector
        x, l = f(T, f"flow.{i}.", x, a, cfg["activation"])
        ld += l
        i += 1
        if cfg["model"] == "realnvp" and cfg["batch_norm"] and k + 1 < cfg["couplings"]:
            x, l = batch_norm(T, f"flow.{i}.", x)
            ld += l
            i += 1
    if cfg["model"] == "nice":
        s = T[f"flow.{i}.s"]
        x = np.exp(s) * x
        ld += s.sum()
        prior = logistic if cfg["prior"] == "logistic" else normal
    else:
        prior = normal
    return ld + prior(x)


def multiscale_log_prob(cfg, T, x):
    lp = np.zeros(x.shape[0])
    i = 0
    if cfg["logit_alpha"] is not None:
        x, l = logit(x, cfg["logit_alpha"])
        lp += l
        i += 1

    def couplings(x, i, lp, f, count):
        for k in range(count):
            x, l = f(T, f"flow.{i}.", x, k % 2 == 1)
            lp = lp + l
            i += 1
            if cfg["batch_norm"]:
                x, l = batch_norm(T, f"flow.{i}.", x)
                lp = lp + l
                i += 1
        return x, i, lp

    for s in range(cfg["scales"]):
        if s + 1 == cfg["scales"]:
            x, i, lp = couplings(x, i, lp, checkerboard_coupling, 4)
            break
        x, i, lp = couplings(x, i, lp, checkerboard_coupling, 3)
        x = squeeze(x)
        i += 1
        x, i, lp = couplings(x, i, lp, channel_coupling, 3)
        c = x.shape[1]
        lp = lp + normal(x[:, c // 2 :])
        x = x[:, : c // 2]
        i += 1
    return lp + normal(x)


def glow_log_prob(cfg, T, x):
    lp = np.zeros(x.shape[0])
    i = 0
    for level in range(cfg["levels"]):
        x = squeeze(x)
        i += 1
        n, c, h, w = x.shape
        for _ in range(cfg["steps"]):
            pre = f"flow.{i}."
            x = (x + T[pre + "bias"][None, :, None, None]) * np.exp(T[pre + "logs"])[None, :, None, None]
            lp = lp + h * w * T[pre + "logs"].sum()
            i += 1
            pre = f"flow.{i}."
            perm = T[pre + "perm"].astype(np.int64)  # floats in format 1
            if cfg["permutation"] == "lu_conv":
                lower = np.tril(T[pre + "lower"], -1) + np.eye(c)
                upper = np.triu(T[pre + "upper"], 1) + np.diag(T[pre + "sign"] * np.exp(T[pre + "log_s"]))
                lu = lower @ upper
                wmat = np.zeros((c, c))
                wmat[perm] = lu
                x = np.einsum("ij,njhw->nihw", wmat, x)
                lp = lp + h * w * T[pre + "log_s"].sum()
            else:
                x = x[:, perm]
            i += 1
            pre = f"flow.{i}."
            ca = c // 2
            xa, xb = x[:, :ca], x[:, ca:]
            u = np.maximum(conv(xa, T[pre + "net.0.weight"], T[pre + "net.0.bias"]), 0)
            u = np.maximum(conv(u, T[pre + "net.1.weight"], T[pre + "net.1.bias"]), 0)
            out = conv(u, T[pre + "net.2.weight"], T[pre + "net.2.bias"])
            if cfg["coupling"] == "affine":
                cb = c - ca
                hh, t = out[:, :cb], out[:, cb:]
                log_scale = -np.logaddexp(0.0, -(hh + 2.0))
                xb = xb * np.exp(log_scale) + t
                lp = lp + per_sample(log_scale)
            else:
                xb = xb + out
            x = np.concatenate([xa, xb], axis=1)
            i += 1
        if level + 1 < cfg["levels"]:
            pre = f"flow.{i}."
            rest, zs = x[:, : c // 2], x[:, c // 2 :]
            hh = conv(rest, T[pre + "prior.weight"], T[pre + "prior.bias"])
            mean, logs = hh[:, : c // 2], hh[:, c // 2 :]
            lp = lp + per_sample(-((zs - mean) ** 2) / (2 * np.exp(2 * logs)) - logs - HALF_LN_2PI)
            x = rest
            i += 1
    mean, log_std = T["base.mean"][None], T["base.log_std"][None]
    return lp + per_sample(-((x - mean) ** 2) / (2 * np.exp(2 * log_std)) - log_std - HALF_LN_2PI)


def log_prob(path, x):
    T, meta = read_safetensors(path)
    cfg = json.loads(meta["exactflow.config"])
    model = cfg["model"]
    if model in ("nice", "realnvp"):
        return vector_log_prob(cfg, T, x)
    if model == "realnvp_multiscale":
        return multiscale_log_prob(cfg, T, x)
    if model == "glow":
        return glow_log_prob(cfg, T, x)
    raise ValueError(f"unknown model {model!r}")


def main(argv):
    if len(argv) == 3:
        print("\n".join(repr(v) for v in log_prob(argv[1], np.load(argv[2]))))
        return 0
    fixtures = Path(__file__).resolve().parents[2] / "models" / "tests" / "fixtures"
    worst = 0.0
    for ckpt in sorted(fixtures.glob("*.safetensors")):
        if ckpt.name.endswith(".expected.safetensors"):
            continue
        expected, _ = read_safetensors(ckpt.with_name(ckpt.stem + ".expected.safetensors"))
        got = log_prob(ckpt, expected["x"])
        err = float(np.max(np.abs(got - expected["log_p"]) / (1 + np.abs(expected["log_p"]))))
        worst = max(worst, err)
        print(f"{ckpt.stem:28s} {len(got):4d} samples  max relative difference {err:.2e}")
    print(f"worst {worst:.2e} (limit 1e-9)")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
