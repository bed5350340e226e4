"""exactflow.Flow against the command line: log_prob bit for bit equal to `exactflow eval
--per-sample`, samples to `exactflow sample`, the audit to `exactflow audit --json`; round trips
through encode/decode and save/load; contexts.
"""

import json

import numpy as np
import pytest

import exactflow
from conftest import MOONS, REPO

# The seed `exactflow audit` draws its samples with when no --data is given (src/cli/audit.rs).
AUDIT_SEED = 0xA0D17000


@pytest.fixture(scope="module")
def flow(moons_run):
    return exactflow.Flow.load(moons_run)


def test_log_prob_equals_eval_per_sample_bit_for_bit(flow, moons_run, cli, tmp_path):
    per_sample = tmp_path / "ll.npy"
    cli("eval", moons_run, "--data", "moons", "--toy-samples", MOONS["toy_samples"], "--per-sample", per_sample)
    want = np.load(per_sample)
    test = exactflow.load_data("moons", seed=MOONS["seed"], toy_samples=MOONS["toy_samples"])["test"]
    assert test.shape == (1250, 2)  # more than one evaluation batch
    got = flow.log_prob(test)
    assert got.dtype == np.float64 and got.shape == (1250,)
    np.testing.assert_array_equal(got, want)
    # Any memory order and float32 input (converted exactly) give the same bits.
    np.testing.assert_array_equal(flow.log_prob(np.asfortranarray(test)), want)
    t32 = test.astype(np.float32)
    np.testing.assert_array_equal(flow.log_prob(t32), flow.log_prob(t32.astype(np.float64)))
    # A single sample is a batch of one. A matrix product of one row sums in another order than
    # one of many rows, so the value may differ from the batched one in the last bits: within
    # 1e-14 relative (a few ulps of a log-density of magnitude ~1).
    single = flow.log_prob(test[5])
    assert single.shape == (1,)
    np.testing.assert_allclose(single, want[5:6], rtol=1e-14, atol=0)


def test_loading_a_checkpoint_file_or_its_directory_is_the_same(flow, moons_run, moons_metrics):
    other = exactflow.Flow.load(str(moons_run / "model.safetensors"))
    x = np.array([[0.1, 0.2], [-1.0, 0.5]])
    np.testing.assert_array_equal(other.log_prob(x), flow.log_prob(x))
    assert flow.config == moons_metrics["config"]
    assert flow.family == "realnvp" and flow.data_shape == (2,) and flow.context_dim == 0
    assert repr(flow).startswith("Flow(family=\"realnvp\", data_shape=(2,)")


def test_samples_equal_the_command_lines(flow, moons_run, cli, tmp_path):
    out = tmp_path / "s.npy"
    cli("sample", moons_run, "-n", 300, "--seed", 11, "--temperature", 0.7, "--out", out)
    np.testing.assert_array_equal(flow.sample(300, temperature=0.7, seed=11), np.load(out))
    a, b = flow.sample(5, seed=1), flow.sample(5, seed=2)
    assert a.shape == (5, 2) and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, flow.sample(5, seed=1))


def test_encode_decode_round_trip(flow):
    x = flow.sample(200, seed=4)
    z = flow.encode(x)
    assert z.shape == (200, 2)
    # Eight affine couplings in float64 on data of magnitude ~2: rounding gives ~1e-15; 1e-10
    # leaves room for the conditioning of the layers and still catches any real defect.
    np.testing.assert_allclose(flow.decode(z), x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(flow.encode(flow.decode(z)), z, rtol=0, atol=1e-10)


def test_audit_equals_the_command_lines(flow, moons_run, cli):
    doc = json.loads(cli("audit", moons_run, "--samples", 4, "--json").stdout)
    got = flow.audit(flow.sample(4, seed=AUDIT_SEED))
    assert got == doc
    assert got["pass"] is True and got["samples"] == 4
    assert [s["name"] for s in got["stages"]] == [f"flow.{i}" for i in range(len(got["stages"]))]


def test_save_and_load_bit_for_bit(flow, tmp_path):
    path = tmp_path / "copy.safetensors"
    flow.save(path)
    x = flow.sample(50, seed=9)
    again = exactflow.Flow.load(path)
    np.testing.assert_array_equal(again.log_prob(x), flow.log_prob(x))
    assert again.config == flow.config


def test_a_multiscale_flow_encodes_every_factored_latent(tmp_path):
    # Glow on 1x8x8 digit images: two levels, so one latent is factored out part way.
    glow, metrics = exactflow.train("glow", "digits-image", preset="tiny", steps=4, batch_size=32, progress=False)
    assert glow.data_shape == (1, 8, 8) and metrics["model"] == "glow"
    x = exactflow.load_data("digits-image")["test"][:6]
    u = (x + 0.5) / 17  # the centres of the dequantization bins
    z = glow.encode(u)
    assert z.shape == (6, 64)
    np.testing.assert_allclose(glow.decode(z), u, rtol=0, atol=1e-9)
    assert glow.decode(z).shape == (6, 1, 8, 8)
    # The flat latent holds the final latent and the factored one: changing only the factored
    # part changes the decoded image.
    z2 = z.copy()
    z2[:, -1] += 1.0
    assert not np.allclose(glow.decode(z2), u)
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        glow.decode(z[:, :32])


def test_an_unconditional_flow_refuses_a_context(flow):
    x = np.zeros((3, 2))
    ctx = np.zeros((3, 4))
    for call in (
        lambda: flow.log_prob(x, context=ctx),
        lambda: flow.encode(x, context=ctx),
        lambda: flow.decode(x, context=ctx),
        lambda: flow.sample(3, context=ctx),
        lambda: flow.audit(x, context=ctx),
    ):
        with pytest.raises(ValueError, match="unconditional"):
            call()
    with pytest.raises(ValueError, match="unconditional"):
        flow.log_prob(np.zeros((2000, 2)), context=np.zeros((2000, 1)))


def test_flow_errors(flow, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        flow.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="not finite|non-finite"):
        flow.log_prob(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="at least 1"):
        flow.sample(0)
    with pytest.raises(ValueError, match="at least 1"):
        flow.sample(-5)
    with pytest.raises(ValueError, match="2\\*\\*32|4294967296"):
        flow.sample(10**12)
    with pytest.raises(ValueError, match="temperature"):
        flow.sample(3, temperature=-1.0)
    with pytest.raises(ValueError, match="seed"):
        flow.sample(3, seed=-1)
    with pytest.raises(OSError, match="nothing-here"):
        exactflow.Flow.load(tmp_path / "nothing-here")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 7 + b"junk")
    with pytest.raises(OSError, match="junk.safetensors"):
        exactflow.Flow.load(junk)
    with pytest.raises(OSError):
        flow.save(tmp_path / "no" / "such" / "dir" / "x.safetensors")


def test_an_old_checkpoint_loads_with_a_user_warning():
    """A format-1 checkpoint (no checksums) loads, as `exactflow eval` loads it, and says so once
    through Python's warnings, as the command line says it on stderr."""
    fixture = REPO / "models/tests/fixtures/realnvp_small.safetensors"
    with pytest.warns(UserWarning, match="no checksums") as caught:
        old = exactflow.Flow.load(fixture)
    assert len(caught) == 1
    assert np.isfinite(old.log_prob(np.zeros((3, 2)))).all()
