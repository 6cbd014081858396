# Set-up and entry points. Every target creates the virtual environment it needs on first use.
#
#   make benchmark   quick sampler-efficiency benchmark on the embedded analytic scenes (a few minutes, CPU)
#   make test        the test suite (CPU)
#
# PyTorch: a fresh environment gets TORCH_SPEC (the CPU build, by default). To keep your own torch
# (e.g. a CUDA build), let the environment see it:  make test VENV_FLAGS=--system-site-packages
# or point PYTHON at an interpreter that already has torch:  make test PYTHON=/path/to/python

VENV ?= .venv
VENV_FLAGS ?=
PYTHON ?= $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.learned-sampler-installed

.PHONY: benchmark test env clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(PYTHON)" ]; then python3 -m venv $(VENV_FLAGS) $(VENV); fi
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[dev]"
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

benchmark: $(STAMP)
	$(PYTHON) benchmarks/sampler_efficiency.py --quick

test: $(STAMP)
	$(PYTHON) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info benchmarks/out .pytest_cache .hypothesis
