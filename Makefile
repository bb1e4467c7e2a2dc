# Two commands on a fresh machine (Python 3.11+, g++, make):
#   make demo   -> creates .venv, installs fxbp, trains the digits MLP on the golden model
#   make test   -> creates/updates .venv and runs the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fxbp-installed
JOBS   ?= 2

.PHONY: demo test test-slow test-all bench clean

TORCH  := $(VENV)/.fxbp-torch-installed

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fxbp needs Python 3.11 or newer: run make PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

# The optional PyTorch baseline, which the tests cover too.
$(TORCH): $(STAMP)
	$(PY) -m pip install --quiet -e ".[torch]"
	touch $(TORCH)

demo: $(STAMP)
	$(VENV)/bin/fxbp train --dataset digits --backend golden --precision fx16 \
		--rounding stochastic --hidden 32 --epochs 30 --batch 32 --lr 2 --loss mse --seed 0 \
		--json runs/demo/result.json --plot runs/demo/curves.png

test: $(STAMP) $(TORCH)
	$(PY) -m pytest -n $(JOBS) -m "not slow"

test-slow: $(STAMP) $(TORCH)
	$(PY) -m pytest -n $(JOBS) -m slow

test-all: $(STAMP) $(TORCH)
	$(PY) -m pytest -n $(JOBS)

bench: $(STAMP)
	$(PY) benchmarks/golden_step.py

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .hypothesis
