# Set-up and entry points. Every target creates the virtual environment it needs on first use.
#
#   make train       train the 3D GAN's CPU preset on the embedded synthetic dataset (about 30 min, CPU)
#   make test        the test suite (CPU), the GAN and nerfstudio integration included
#   make benchmark   quick sampler-efficiency benchmark on the embedded analytic scenes (a few minutes, CPU)
#
# PyTorch: a fresh environment gets TORCH_SPEC (torch with the torchvision that nerfstudio,
# torch-fidelity and LPIPS need; these builds run on the CPU too). To keep your own torch and
# torchvision (e.g. CUDA builds), let the environment see them:  make test VENV_FLAGS=--system-site-packages
# or point PYTHON at an interpreter that already has them:  make test PYTHON=/path/to/python

VENV ?= .venv
VENV_FLAGS ?=
PYTHON ?= $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= gan,nerfstudio,dev
STAMP := $(VENV)/.learned-sampler-installed

.PHONY: train test benchmark env clean

env: $(STAMP)

# torch and torchvision are pinned in the same pip command as the project when they are missing:
# installed apart, nerfstudio's requirements would replace them with another torch.
$(STAMP): pyproject.toml
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(PYTHON)" ]; then python3 -m venv $(VENV_FLAGS) $(VENV); fi
	@if $(PYTHON) -c "import torch, torchvision" 2>/dev/null; then \
		$(PYTHON) -m pip install -e ".[$(EXTRAS)]"; \
	else \
		$(PYTHON) -m pip install $(TORCH_SPEC) -e ".[$(EXTRAS)]"; \
	fi
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

train: $(STAMP)
	$(PYTHON) -m wysiwyg_gan.train

test: $(STAMP)
	$(PYTHON) -m pytest

benchmark: $(STAMP)
	$(PYTHON) benchmarks/sampler_efficiency.py --quick

clean:
	rm -rf $(VENV) build *.egg-info benchmarks/out .pytest_cache .hypothesis
