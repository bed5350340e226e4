"""What a Python user expects of the package: the GIL is released while it computes, garbage
input raises ordinary exceptions (never a panic or a crash), every public name is documented and
type-stubbed, and train shows the command line's progress bar on a terminal.
"""

import ast
import inspect
import os
import pathlib
import pty
import subprocess
import sys
import threading

import numpy as np
import pytest

import exactflow
from conftest import REPO

STUB = REPO / "python" / "exactflow.pyi"
# What bad input may raise: wrong values, wrong files, wrong types (a str where a number goes).
ORDINARY = (ValueError, OSError, TypeError)


def test_the_gil_is_released_while_computing():
    # With a switch interval of 100 s, a thread that holds the GIL keeps it until it blocks or
    # releases it. The helper thread, woken just before the call, can therefore only run while
    # the main thread is inside exactflow if exactflow released the GIL. The call (LU of a
    # 1500 x 1500 matrix, about 0.1 s) leaves the operating system ample time to schedule it.
    a = np.random.default_rng(0).standard_normal((1500, 1500))
    state = {"inside": False, "seen": None}
    go = threading.Event()

    def helper():
        go.wait()
        state["seen"] = state["inside"]

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        t = threading.Thread(target=helper)
        t.start()
        go.set()
        state["inside"] = True
        exactflow.slogdet(a)
        state["inside"] = False
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert state["seen"] is True


def stub_tree():
    return ast.parse(STUB.read_text())


def documented(tree):
    """The stub's functions, classes and their members, with their docstrings."""
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = (node, ast.get_docstring(node))
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, ast.FunctionDef):
                        out[f"{node.name}.{member.name}"] = (member, ast.get_docstring(member))
    return out


def test_every_public_name_is_stubbed_with_the_same_docstring_and_parameters():
    stubs = documented(stub_tree())
    public = [n for n in dir(exactflow) if not n.startswith("_")]
    names = []
    for name in public:
        obj = getattr(exactflow, name)
        if inspect.ismodule(obj):
            continue
        names.append(name)
        if inspect.isclass(obj):
            names += [f"{name}.{m}" for m in vars(obj) if not m.startswith("_")]
    assert sorted(names) == sorted(stubs), "the stub file and the module differ"
    assert inspect.cleandoc(exactflow.__doc__) == ast.get_docstring(stub_tree())
    for name in names:
        node, doc = stubs[name]
        owner, _, member = name.partition(".")
        obj = getattr(exactflow, owner)
        if member:
            obj = getattr(obj, member)
        real_doc = obj.__doc__
        assert doc and real_doc, f"{name} has no docstring"
        assert inspect.cleandoc(real_doc) == doc, f"{name}: the stub's docstring differs from the module's"
        if not callable(obj) or inspect.isclass(obj):
            continue  # a property (its type is in the stub) or the class
        params = list(inspect.signature(obj).parameters)
        stub_params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        assert params == stub_params, f"{name}: parameters {params} in the module, {stub_params} in the stub"


def test_the_wheel_ships_the_stub_and_py_typed():
    package = pathlib.Path(exactflow.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "__init__.pyi").read_text() == STUB.read_text()


def garbage_inputs():
    rng = np.random.default_rng(42)
    yield None
    yield "abc"
    yield b"\x00\xff"
    yield object()
    yield 3.5
    yield [[1.0, 2.0], [3.0]]  # ragged
    yield {"a": 1}
    yield np.array(["a", "b"])
    yield np.array([object(), None])
    yield np.zeros((2, 2), dtype=np.complex64)
    yield np.zeros((2, 2), dtype=bool)
    yield np.zeros(())
    yield np.zeros((0,))
    yield np.zeros((0, 5))
    yield np.full((3, 3), np.inf)
    yield np.full((2, 2), -np.nan)
    yield np.zeros((1, 1, 1, 1, 1, 1, 1, 2))
    yield np.array([[1e308, 1e308], [-1e308, 1e308]])
    yield np.float64(1.0)
    for _ in range(20):
        shape = tuple(rng.integers(0, 4, size=rng.integers(0, 5)))
        yield rng.standard_normal(shape) * 10.0 ** rng.integers(-300, 300)


def test_garbage_raises_ordinary_exceptions(tmp_path):
    flow, _ = exactflow.train("nice", "moons", steps=1, toy_samples=64, batch_size=32, progress=False)
    calls = {
        "slogdet": exactflow.slogdet,
        "audit_matrix": exactflow.audit_matrix,
        "log_prob": flow.log_prob,
        "encode": flow.encode,
        "decode": flow.decode,
        "audit": flow.audit,
        "log_prob(context)": lambda g: flow.log_prob(np.zeros((2, 2)), context=g),
        "sample(n)": lambda g: flow.sample(g),
        "sample(temperature)": lambda g: flow.sample(2, temperature=g),
        "sample(seed)": lambda g: flow.sample(2, seed=g),
        "train(data)": lambda g: exactflow.train("nice", g, steps=1, progress=False),
        "train(model)": lambda g: exactflow.train(g, "moons", steps=1, progress=False),
        "load_data": exactflow.load_data,
        "Flow.load": exactflow.Flow.load,
    }
    outcomes = 0
    for name, call in calls.items():
        for g in garbage_inputs():
            try:
                call(g)
                outcomes += 1
            except ORDINARY:
                outcomes += 1
            # Anything else (pyo3's PanicException is a BaseException) fails the test.
    assert outcomes == len(calls) * len(list(garbage_inputs()))
    # Files of garbage: random bytes of many lengths, and a safetensors header that lies.
    rng = np.random.default_rng(7)
    for k, size in enumerate([0, 1, 7, 8, 9, 64, 1000, 100_000]):
        p = tmp_path / f"g{k}.safetensors"
        p.write_bytes(rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
        with pytest.raises(OSError):
            exactflow.Flow.load(p)
    liar = tmp_path / "liar.safetensors"
    liar.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(OSError):
        exactflow.Flow.load(liar)
    with pytest.raises(OSError):
        exactflow.Flow.load(tmp_path)  # a directory without a checkpoint


def test_train_draws_the_command_lines_bar_on_a_terminal():
    # A child Python whose stderr is a pseudo-terminal: indicatif draws its bar there.
    code = "import exactflow; exactflow.train('nice', 'moons', steps=300, toy_samples=2000, batch_size=64)"
    leader, follower = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", code], stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closes when the child exits
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert child.wait() == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "training nice (toy) on moons" in screen
    assert "/300 steps" in screen and "loss" in screen and "steps/s" in screen
    assert "epoch 1 (step 31): train NLL" in screen
