# One command each: `make test` and `make demo` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SYMGRAD_CACHE_DIR ?= $(CURDIR)/.symgrad-cache

.PHONY: test fuzz demo install clean mutants

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,plot,progress,distributed]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The random-graph fuzzer (tests/test_fuzz.py) with many more graphs, every one compiled
# (values, gradients, JVPs, HVPs) with and without the simplifier.
SYMGRAD_FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	SYMGRAD_FUZZ_EXAMPLES=$(SYMGRAD_FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py -q

demo: $(STAMP)
	$(BIN)/symgrad demo

# deliberate one-line bugs, each of which the tests must catch (tests/mutation_check.py)
mutants: $(STAMP)
	$(BIN)/python tests/mutation_check.py

clean:
	rm -rf $(VENV) .symgrad-cache .pytest_cache symgrad-demo
