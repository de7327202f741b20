"""The compile cache: a second process compiles nothing; corrupt entries, unwritable folders
and concurrent compiles are survived."""
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
    assert sources and binaries
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
print(json.dumps(dict(jit.stats, steps=len(jit._steps))))
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
