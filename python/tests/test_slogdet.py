"""exactflow.slogdet against numpy.linalg.slogdet, and exactflow.audit_matrix against
`exactflow logdet --audit --json`.

Tolerances. exactflow and LAPACK both factor by LU with partial pivoting but in different orders
of operations, so their log|det| differ by rounding. exactflow's own audit gives a rigorous bound
B on |computed - exact log|det|| for exactflow's result (Higham's perturbation bound, see
kernels/src/audit.rs), and LAPACK's LU is backward stable in the same sense, so the two results
are compared within 2 B (each within about B of the exact value). The exact value itself is
checked within B where it is known (float32 input recomputed in float64).
"""

import json

import numpy as np
import pytest

import exactflow


def random_matrix(n, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, n)).astype(dtype)


def bound(a):
    return exactflow.audit_matrix(a)["audit"]["log_abs_error_bound"]


@pytest.mark.parametrize("n", [1, 2, 3, 16, 65, 200])
def test_random_float64_matches_numpy(n):
    a = random_matrix(n, seed=n)
    sign, logabs = exactflow.slogdet(a)
    ref_sign, ref_logabs = np.linalg.slogdet(a)
    assert isinstance(sign, np.float64) and isinstance(logabs, np.float64)
    assert sign == ref_sign
    assert abs(logabs - ref_logabs) <= 2 * bound(a)


@pytest.mark.parametrize("n", [3, 40, 150])
def test_float32_is_computed_in_float32(n):
    a = random_matrix(n, seed=100 + n, dtype=np.float32)
    sign, logabs = exactflow.slogdet(a)
    ref_sign, ref_logabs = np.linalg.slogdet(a)
    assert isinstance(sign, np.float32) and isinstance(logabs, np.float32)
    assert sign == ref_sign
    b = bound(a)  # the float32 computation's bound
    assert abs(float(logabs) - float(ref_logabs)) <= 2 * b
    # The same values in float64 are the reference the float32 result is within b of.
    _, exact = np.linalg.slogdet(a.astype(np.float64))
    assert abs(float(logabs) - exact) <= b


def test_singular_and_special_matrices_as_numpy():
    dup = random_matrix(6, seed=1)
    dup[4] = dup[1]  # a repeated row: elimination produces an exactly zero pivot
    cases = [np.zeros((3, 3)), dup, np.eye(5), -np.eye(3), np.diag([2.0, -0.5, 4.0])]
    for a in cases:
        sign, logabs = exactflow.slogdet(a)
        ref_sign, ref_logabs = np.linalg.slogdet(a)
        assert sign == ref_sign
        if ref_sign == 0:
            assert logabs == -np.inf
        else:
            assert abs(logabs - ref_logabs) <= 2 * bound(a)
    assert exactflow.slogdet(np.zeros((0, 0))) == (1.0, 0.0) == tuple(np.linalg.slogdet(np.zeros((0, 0))))


def test_memory_order_and_strides_do_not_change_a_bit():
    a = random_matrix(70, seed=7)
    want = exactflow.slogdet(np.ascontiguousarray(a))
    views = [
        np.asfortranarray(a),
        a.T.T,
        np.ascontiguousarray(a.T).T,  # Fortran-contiguous view
        np.pad(a, ((0, 0), (0, 5)))[:, :70],  # rows with padding
        np.pad(a, ((3, 3), (3, 3)))[3:-3, 3:-3],
    ]
    for v in views:
        assert exactflow.slogdet(v) == want
    big = random_matrix(140, seed=8)
    for v in [big[::2, ::2], big[::-2, 1::2], big[:70, 70:].T]:
        assert exactflow.slogdet(v) == exactflow.slogdet(np.ascontiguousarray(v))
        ref = np.linalg.slogdet(v)
        assert exactflow.slogdet(v)[0] == ref[0]
        assert abs(exactflow.slogdet(v)[1] - ref[1]) <= 2 * bound(np.ascontiguousarray(v))


def test_stacks_as_numpy():
    rng = np.random.default_rng(5)
    stack = rng.standard_normal((2, 3, 6, 6))
    stack[1, 2] = 0.0  # one singular matrix in the stack
    sign, logabs = exactflow.slogdet(stack)
    ref_sign, ref_logabs = np.linalg.slogdet(stack)
    assert sign.shape == logabs.shape == (2, 3)
    np.testing.assert_array_equal(sign, ref_sign)
    assert logabs[1, 2] == -np.inf
    for i in range(2):
        for j in range(3):
            assert (sign[i, j], logabs[i, j]) == exactflow.slogdet(stack[i, j])
    finite = np.isfinite(ref_logabs)
    np.testing.assert_allclose(logabs[finite], ref_logabs[finite], rtol=0, atol=1e-12)
    # A strided, reversed, transposed stack is read in logical order: the same bits as its copy.
    big = rng.standard_normal((3, 4, 40, 40))
    view = big[::2, 1::2, ::-1, :].transpose(0, 1, 3, 2)
    for got, want in zip(exactflow.slogdet(view), exactflow.slogdet(np.ascontiguousarray(view))):
        np.testing.assert_array_equal(got, want)
    # A non-contiguous stack, float32, and an empty one.
    sign32, _ = exactflow.slogdet(stack[:, ::2].astype(np.float32))
    assert sign32.dtype == np.float32 and sign32.shape == (2, 2)
    empty = exactflow.slogdet(np.zeros((0, 4, 4)))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_lists_methods_and_triangular_matrices():
    assert exactflow.slogdet([[2.0, 1.0], [4.0, -3.0]])[0] == -1.0
    lower = np.tril(random_matrix(30, seed=3)) + 10 * np.eye(30)
    auto = exactflow.slogdet(lower)
    tri = exactflow.slogdet(lower, method="triangular")
    lu = exactflow.slogdet(lower, method="lu")
    diag = np.diag(lower)
    assert auto == tri  # the diagonal of a triangular matrix
    assert auto[1] == pytest.approx(np.sum(np.log(np.abs(diag))), abs=1e-12)
    assert abs(lu[1] - auto[1]) <= 2 * bound(lower)
    with pytest.raises(ValueError, match="triangular"):
        exactflow.slogdet(random_matrix(4, seed=1), method="triangular")
    with pytest.raises(ValueError, match="'qr'"):
        exactflow.slogdet(lower, method="qr")


def test_bad_input_is_a_value_error_naming_the_problem():
    a = random_matrix(5, seed=2)
    a[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        exactflow.slogdet(a)
    a[3, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite entry inf"):
        exactflow.slogdet(a)
    stack = np.ones((3, 2, 2))
    stack[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="matrix 2 of the stack"):
        exactflow.slogdet(stack)
    with pytest.raises(ValueError, match="square"):
        exactflow.slogdet(np.ones((3, 4)))
    with pytest.raises(ValueError, match="two axes"):
        exactflow.slogdet(np.ones(4))
    with pytest.raises(ValueError, match="int64"):
        exactflow.slogdet(np.eye(3, dtype=np.int64))
    with pytest.raises(ValueError, match="complex128"):
        exactflow.slogdet(np.eye(3, dtype=np.complex128))


def as_json(v):
    """The dict as the command line's JSON writes it: non-finite floats as strings."""
    if isinstance(v, dict):
        return {k: as_json(x) for k, x in v.items()}
    if isinstance(v, float) and not np.isfinite(v):
        return "NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def test_audit_matrix_is_the_document_of_the_command_line(cli, tmp_path):
    a = random_matrix(12, seed=9)
    integer = np.array([[2.0, 1.0, 0.0], [4.0, -3.0, 7.0], [1.0, 1.0, 1.0]])
    singular = np.array([[1.0, 2.0], [2.0, 4.0]], dtype=np.float32)
    for name, m in [("random", a), ("integer", integer), ("singular", singular), ("f32", a.astype(np.float32))]:
        path = tmp_path / f"{name}.npy"
        np.save(path, m)
        doc = json.loads(cli("logdet", path, "--audit", "--json").stdout)
        got = exactflow.audit_matrix(m)
        assert set(got) == {"n", "sign", "log_abs", "method", "seconds", "audit"}
        got.pop("seconds"), doc.pop("seconds")
        assert as_json(got) == doc, name
    singular_doc = exactflow.audit_matrix(singular)
    assert singular_doc["log_abs"] == -np.inf and singular_doc["audit"]["cond1_estimate"] == np.inf
    assert exactflow.audit_matrix(integer)["audit"]["exact"]["digits"] == str(round(np.linalg.det(integer)))
    assert exactflow.audit_matrix(a, method="lu")["method"] == "lu"
    with pytest.raises(ValueError, match="square"):
        exactflow.audit_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError):
        exactflow.audit_matrix(np.zeros((0, 0)))
