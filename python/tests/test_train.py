"""exactflow.train against `exactflow train`: the same options with the same defaults give the
same run (metrics and parameters, bit for bit, one thread), arrays train as the same array saved
to a .npy file, and bad options are errors naming them.
"""

import json

import numpy as np
import pytest

import exactflow
from conftest import MOONS, cli_flags

# Fields of the metrics that measure time or name files.
VOLATILE = {"samples_per_sec", "wall_seconds", "pictures", "train_config"}


def comparable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def test_train_is_the_command_lines_run(moons_run, moons_metrics):
    options = dict(MOONS)
    model, data = options.pop("model"), options.pop("data")
    flow, metrics = exactflow.train(model, data, progress=False, **options)
    assert comparable(metrics) == comparable(moons_metrics)
    cli_config = dict(moons_metrics["train_config"], checkpoint=None)
    assert metrics["train_config"] == cli_config
    test = exactflow.load_data("moons", seed=MOONS["seed"], toy_samples=MOONS["toy_samples"])["test"]
    np.testing.assert_array_equal(flow.log_prob(test), exactflow.Flow.load(moons_run).log_prob(test))


def test_the_defaults_are_the_command_lines(cli, tmp_path):
    # Every option left out but the run's length (the default toy run is 2000 steps).
    out = tmp_path / "run"
    cli("train", "--model", "nice", "--data", "circles", "--steps", "5", "--out", out)
    want = json.loads((out / "metrics.json").read_text())
    _, metrics = exactflow.train("nice", "circles", steps=5, progress=False)
    assert comparable(metrics) == comparable(want)
    assert metrics["train_config"] == dict(want["train_config"], checkpoint=None)
    assert metrics["train_config"]["batch_size"] == 512 and metrics["seed"] == 0
    assert metrics["train_config"]["schedule"]["lr"] == 1e-3


def test_an_array_trains_as_the_same_array_in_a_npy_file(tmp_path):
    x = np.random.default_rng(1).standard_normal((300, 3))
    x[:, 2] = x[:, 0] * x[:, 1]
    path = tmp_path / "x.npy"
    np.save(path, x)
    kw = dict(steps=6, batch_size=64, seed=2, progress=False)
    flow_a, from_array = exactflow.train("realnvp", x, **kw)
    flow_f, from_file = exactflow.train("realnvp", f"npy:{path}", **kw)
    assert from_array["data"] == "array" and from_file["data"] == f"npy:{path}"
    for split in ("train", "validation", "test"):
        assert from_array[split] == from_file[split]
    np.testing.assert_array_equal(flow_a.log_prob(x), flow_f.log_prob(x))
    # float32 and Fortran order are the same samples; uint8 is 256-level discrete data.
    _, f32 = exactflow.train("realnvp", np.asfortranarray(x.astype(np.float32)), **kw)
    _, f32_file = exactflow.train("realnvp", x.astype(np.float32).astype(np.float64), **kw)
    assert f32["test"] == f32_file["test"]
    pixels = np.random.default_rng(2).integers(0, 256, size=(200, 1, 4, 4), dtype=np.uint8)
    _, m = exactflow.train("realnvp", pixels, preset="digits-image", **kw)
    assert m["test"]["bits_per_dim"] is not None


def test_out_writes_what_the_command_line_writes(tmp_path):
    out = tmp_path / "run"
    flow, metrics = exactflow.train("realnvp", "moons", steps=10, toy_samples=500, out=out, progress=False)
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["pictures"] == [str(out / "density_samples.png")]
    x = flow.sample(20, seed=1)
    np.testing.assert_array_equal(exactflow.Flow.load(out).log_prob(x), flow.log_prob(x))
    # Resume the finished run for 5 more steps, as `--resume` does.
    _, more = exactflow.train("realnvp", "moons", steps=10, toy_samples=500, out=out, resume=True, progress=False)
    assert more["steps"] == 10


def test_progress_lines_when_stderr_is_not_a_terminal(capfd):
    exactflow.train("nice", "moons", steps=3, toy_samples=300, batch_size=100)
    err = capfd.readouterr().err
    assert "training nice (toy) on moons (300 train / 75 validation / 75 test samples" in err
    assert "epoch 1 (step 3): train NLL" in err
    exactflow.train("nice", "moons", steps=3, toy_samples=300, progress=False)
    assert capfd.readouterr().err == ""


def test_bad_options_are_errors_naming_them(tmp_path):
    cases = [
        (dict(model="flowy"), ValueError, "unknown model 'flowy'"),
        (dict(preset="huge"), ValueError, "huge"),
        (dict(data="mars"), ValueError, "unknown data set 'mars'"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=-3), ValueError, "batch_size"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(threads=0), ValueError, "threads"),
        (dict(steps=3, epochs=2), ValueError, "epochs"),
        (dict(steps=0), ValueError, "at least one step"),
        (dict(resume=True), ValueError, "resume"),
        (dict(resume=True, out=tmp_path / "empty"), OSError, "model.safetensors"),
        (dict(data="csv:/nonexistent/x.csv"), OSError, "x.csv"),
        (dict(data=np.zeros((10, 2, 2))), ValueError, r"\(N, D\) or \(N, C, H, W\)"),
        (dict(data=np.array([[0.0, np.nan]] * 20)), ValueError, "not finite|non-finite"),
        (dict(data=np.zeros((20, 2), dtype=np.int32)), ValueError, "int32"),
        (dict(model="nice", data=np.zeros((20, 3)), context=np.zeros((20, 2))), ValueError, "no conditional models"),
        (dict(context=np.zeros((20, 2))), ValueError, "named data set"),
        (dict(data=np.zeros((20, 3)), context=np.zeros((19, 2))), ValueError, "length 19, expected 20"),
        (dict(data=np.zeros((20, 3)), context=np.array([[0.0, 1.0]] * 7 + [[np.nan, 0.0]] * 13)), ValueError, r"\(7, 0\)"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(data=np.zeros((20, 3)), context=np.zeros((20, 2)), context_embedding="8:"), ValueError, "context embedding"),
        (dict(context_embedding="8"), ValueError, "context"),
    ]
    for change, error, message in cases:
        kw = dict(model="realnvp", data="moons", steps=2, toy_samples=100, progress=False)
        kw.update(change)
        with pytest.raises(error, match=message):
            exactflow.train(kw.pop("model"), kw.pop("data"), **kw)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        exactflow.train("glow", "moons", preset="tiny", steps=1, progress=False)


def test_a_context_trains_a_conditional_flow():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(200, 2))
    x = c @ np.array([[1.0, 0.5], [-0.3, 0.8]]) + 0.3 * rng.normal(size=(200, 2))
    flow, metrics = exactflow.train("nsf", x, context=c, steps=3, progress=False)
    assert flow.context_dim == 2 and np.isfinite(metrics["test"]["nll"])
    assert np.all(np.isfinite(flow.log_prob(x[:5], context=c[:5])))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(x[:5])


def test_a_context_embedding_trains_with_the_flow():
    """context_embedding="8:4" maps the 2-D context by an MLP 2 -> 8 -> 4 before every
    conditioner: the flow still takes the raw 2-D context, and the checkpoint holds the
    embedding's tensors (embedding.*), as `exactflow train --context-embedding 8:4` writes them."""
    rng = np.random.default_rng(1)
    c = rng.normal(size=(200, 2))
    x = c @ np.array([[1.0, 0.5], [-0.3, 0.8]]) + 0.3 * rng.normal(size=(200, 2))
    flow, metrics = exactflow.train("maf", x, context=c, context_embedding="8:4", steps=3, progress=False)
    assert flow.context_dim == 2 and np.isfinite(metrics["test"]["nll"])
    assert metrics["config"]["context_embedding"] == {"hidden": [8], "dim": 4}
    assert np.all(np.isfinite(flow.log_prob(x[:5], context=c[:5])))


def test_a_diverging_run_is_a_runtime_error():
    # NICE with a learning rate of 1e3: the first Adam step moves every weight by about lr. An
    # epoch of 500 samples is one step (0-based step 0). In f32 (the default) the rescaling's
    # output overflows there; in f64 the validation after it is worse than the initial model's by
    # more than the divergence margin (1 nat per dimension). Either way the run stops at step 0
    # (seeded, one thread: always the same step).
    with pytest.raises(RuntimeError, match="diverged at step 0: output of flow.4 .Scaling. is not finite"):
        exactflow.train("nice", "moons", steps=200, toy_samples=500, lr=1e3, progress=False)
    with pytest.raises(RuntimeError, match="diverged at step 0: the validation NLL"):
        exactflow.train(
            "nice", "moons", steps=200, toy_samples=500, lr=1e3, precision="f64", progress=False
        )


@pytest.mark.parametrize(
    "model,preset",
    [("maf", None), ("iaf", None), ("nsf", "coupling"), ("nsf", "autoregressive")],
)
def test_the_autoregressive_and_spline_models_train_score_and_sample(model, preset, tmp_path):
    # A few steps of each new family through the same run as the command line: the flow comes
    # back trained, scores the test split with finite values equal to its saved checkpoint's, and
    # samples (MAF in D passes, IAF in one; both round-trip through encode/decode).
    out = tmp_path / model
    flow, metrics = exactflow.train(
        model, "moons", preset=preset, steps=5, toy_samples=1000, out=str(out), progress=False
    )
    assert metrics["steps"] == 5
    test = exactflow.load_data("moons", seed=0, toy_samples=1000)["test"]
    lp = flow.log_prob(test)
    assert lp.shape == (len(test),) and np.all(np.isfinite(lp))
    np.testing.assert_array_equal(lp, exactflow.Flow.load(str(out)).log_prob(test))
    x = flow.sample(64, seed=3)
    assert x.shape == (64, 2) and np.all(np.isfinite(x))
    np.testing.assert_allclose(flow.decode(flow.encode(x)), x, rtol=0, atol=1e-9)
