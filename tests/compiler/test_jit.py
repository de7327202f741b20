"""The compile cache: a second process compiles nothing; corrupt entries, unwritable folders
and concurrent compiles are survived; a warm process runs compiled code before Numba's typing
registries are loaded, and its first runner agrees with the one that follows."""
import glob
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys, warnings
import numpy as np
import symgrad as sg
x = sg.placeholder("x", (None, 4), "float64")
f = sg.function([x], sg.sum(sg.tanh(x) * 3.0, axis=1))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    g = sg.function([x], sg.exp(x) * 5.0)  # compiled after the warning filter is set
value = f(np.ones((2, 4)))
stats = sg.compiler.jit.cache_stats()
print(json.dumps({"value": value.tolist(), "hits": stats["loaded"], "misses": stats["compiled"],
                  "warnings": [str(w.message) for w in caught]}))
"""


def run(cache_dir):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


EXPECTED = pytest.approx([12 * 0.7615941559557649] * 2)


def test_second_process_loads_from_cache(tmp_path):
    first = run(tmp_path)
    assert first["value"] == EXPECTED and first["misses"] >= 1
    second = run(tmp_path)
    assert second["value"] == EXPECTED
    assert second["hits"] >= 1 and second["misses"] == 0


def test_corrupt_entries_are_treated_as_misses(tmp_path):
    run(tmp_path)
    sources = glob.glob(str(tmp_path / "step_*.py"))
    binaries = glob.glob(str(tmp_path / "__pycache__" / "*"))
    binaries += glob.glob(str(tmp_path / "step_*.o"))  # the object code kept for fast loading
    assert sources and binaries and any(path.endswith(".o") for path in binaries)
    for path in sources + binaries:
        with open(path, "r+b") as f:
            data = f.read()
            f.seek(0)
            f.truncate()
            f.write(data[: len(data) // 2])
    again = run(tmp_path)
    assert again["value"] == EXPECTED
    assert run(tmp_path)["hits"] >= 1  # and the cache is whole again


def test_unwritable_cache_falls_back_to_memory_with_a_warning(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(blocker / "cache")
    assert result["value"] == EXPECTED
    assert any("compiling in memory" in w for w in result["warnings"])


def test_two_processes_compiling_at_once(tmp_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["value"] == EXPECTED
    assert run(tmp_path)["misses"] == 0


def test_clear_cache(tmp_path, monkeypatch):
    import symgrad as sg
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path / "c"))
    sg.clear_cache()  # forget the steps this process compiled, so they are written to c/ again
    x = sg.placeholder("x", (2,), "float64")
    sg.function([x], x * 7.0)
    assert glob.glob(str(tmp_path / "c" / "step_*.py"))
    sg.clear_cache()
    assert not (tmp_path / "c").exists()


MODEL = r"""
import json, sys
import numpy as np
import symgrad as sg
from symgrad.compiler import jit
depth = int(sys.argv[1])
x = sg.placeholder("x", (None, 8), "float32")
h = x
for k in range(depth):
    h = sg.tanh(h @ sg.Variable(np.full((8, 8), 0.1, np.float32), name=f"W{k}"))
f = sg.function([x], sg.grad(sg.sum(h * h), x))
f(np.ones((2, 8), np.float32))
print(json.dumps(dict(jit.stats, steps=len(jit._steps) + 1)))  # the steps and the ctypes runner
"""


def test_a_new_model_reuses_the_steps_compiled_for_another(tmp_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))

    def model(depth):
        out = subprocess.run([sys.executable, "-c", MODEL, str(depth)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = model(3)
    assert first["steps"] >= 4 and first["compiled"] == first["steps"]
    second = model(2)  # another model, made of the same steps
    assert second["steps"] >= 4
    assert second["compiled"] == 0 and second["loaded"] == second["steps"]


FAST_START = r"""
import json, sys, threading
import numpy as np
import symgrad as sg
from symgrad.compiler import jit
gate = threading.Event()
numba_runner = jit.compile_runner
jit.compile_runner = lambda types: gate.wait() and numba_runner(types)  # held back
x = sg.placeholder("x", (None, 4), "float64")
W = sg.Variable(np.full((4, 3), 0.5), name="W")
f = sg.function([x], sg.tanh(x @ W) * 2.0, background=True)
f.wait()
value = f(np.ones((2, 4)))  # compiled, by the first runner
registries = "numba.np.arraymath" in sys.modules  # Numba's typing registries loaded?
gate.set()
print(json.dumps({"value": value.tolist(), "registries": registries, "stats": jit.stats}))
"""


def test_a_warm_process_runs_compiled_code_before_numbas_registries(tmp_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path), SYMGRAD_BACKGROUND_COMPILE="1")
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", FAST_START], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    expected = pytest.approx([2 * 0.9640275800758169] * 6)  # 2 tanh(4 · 0.5), 2×3 values
    assert sum(runs[0]["value"], []) == expected and sum(runs[1]["value"], []) == expected
    assert runs[0]["stats"]["compiled"] > 0
    # the second process loads every step's object code, and the ctypes runner's, without
    # the registries (0.2 s) that Numba's own cache needs to load anything
    assert runs[1]["stats"]["compiled"] == 0 and runs[1]["stats"]["loaded"] > 0
    assert runs[1]["registries"] is False


def _train_step(seed):
    import numpy as np
    import symgrad as sg
    rng = np.random.default_rng(seed)
    x = sg.placeholder("x", (None, 5), "float32")
    p = sg.placeholder("p", (None, 3), "float32")
    W = sg.Variable(rng.normal(0, 0.3, (5, 3)).astype(np.float32), name="W")
    b = sg.Variable(np.zeros(3, np.float32), name="b")
    loss = sg.nn.softmax_cross_entropy(x @ W + b, p, labels_sum_to_one=True)
    step = sg.function([x, p], loss, updates=[(v, v - 0.3 * sg.grad(loss, v)) for v in (W, b)])
    return step, (W, b)


def test_the_two_runners_give_the_same_results_and_refusals():
    # the ctypes runner (first calls of a process) and native.run (after) run the same plans
    # and steps: bit-for-bit the same numbers, the same refused calls, the same updates
    import numpy as np
    from symgrad.compiler import jit
    numba_step, numba_params = _train_step(0)
    ctypes_step, ctypes_params = _train_step(0)
    ctypes_step._runner = jit.table_runner()
    rng = np.random.default_rng(1)
    for batch in (4, 4, 1, 0, 7):
        xb = rng.standard_normal((batch, 5)).astype(np.float32)
        pb = np.eye(3, dtype=np.float32)[rng.integers(0, 3, batch)]
        a, b = numba_step(xb, pb), ctypes_step(xb, pb)
        np.testing.assert_array_equal(a, b)
        for u, v in zip(numba_params, ctypes_params):
            np.testing.assert_array_equal(u.value, v.value)
    bad = np.full((2, 3), 0.5, np.float32)  # rows that do not sum to 1: the check refuses
    before = [v.value.copy() for v in ctypes_params]
    for step in (numba_step, ctypes_step):
        with pytest.raises(ValueError, match="do not sum to 1"):
            step(np.ones((2, 5), np.float32), bad)
    for v, old in zip(ctypes_params, before):
        np.testing.assert_array_equal(v.value, old)
