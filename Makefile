# kubeload: `make demo` runs a load test on this machine, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := worker-image/constraints.txt hack/dev-constraints.txt
CLUSTER_DIR ?= .cluster
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REGISTRY ?= ghcr.io/kubeload

.PHONY: help setup system-deps test lint typecheck unit integration e2e crd docs demo \
        bench bench-engine bench-engines bench-idle bench-redis cluster-up cluster-down control-plane images manifests e2e-kind clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps $(STAMP) ## create .venv with kubeload and its dev tools; install redis-server if missing

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(addprefix --constraint ,$(CONSTRAINTS)) -e '.[dev]'
	touch $(STAMP)

system-deps: ## install the Debian packages the project needs when they are missing
	@bash hack/system-deps.sh

lint: setup ## ruff on everything, import contracts
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: setup ## mypy --strict on src/
	$(BIN)/mypy

test: setup lint typecheck control-plane ## setup, ruff, mypy, the control plane (built once), then the whole pytest suite
	$(BIN)/pytest

unit: setup ## only the unit tests
	$(BIN)/pytest tests/unit

crd: setup ## regenerate crds/loadtest.yaml (and the chart's copy) and the README spec reference from the models
	$(BIN)/kubeload crd > crds/loadtest.yaml
	cp crds/loadtest.yaml charts/kubeload/files/crds/loadtest.yaml
	$(BIN)/python hack/update_readme.py

manifests: ## render operator/manifests/ (install without Helm) from the chart
	bash hack/render-manifests.sh

images: ## build the worker and operator images (needs a Docker engine), tagged with the package version
	docker build -f worker-image/Dockerfile --build-arg VERSION=$(VERSION) -t $(REGISTRY)/kubeload:$(VERSION) .
	docker build -f operator/Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg KUBELOAD_IMAGE=$(REGISTRY)/kubeload:$(VERSION) -t $(REGISTRY)/kubeload-operator:$(VERSION) .

demo: setup ## run examples/quickstart.yaml against the demo target, with live progress and a report
	@bash hack/demo.sh

bench-engine: setup ## kubeload vs wrk vs Locust FastHttpUser on one core each, side by side
	$(BIN)/python bench/engine.py

bench-engines: setup ## the pyreqwest and aiohttp engines side by side, bare and inside the worker
	$(BIN)/python bench/engines.py

bench-idle: setup ## peak RSS of one worker process holding 10,000 idle VUs
	$(BIN)/python bench/idle_vus.py

bench-redis: setup ## Redis commands per HTTP request, kubeload vs the read-before-every-request recipe
	$(BIN)/python bench/redis_per_request.py

bench: bench-engine bench-engines bench-idle bench-redis ## every benchmark

control-plane: ## build (once, cached outside the repo) etcd, kube-apiserver, kwok, helm, kubectl
	bash hack/control-plane/build.sh

cluster-up: control-plane ## start a real control plane in $(CLUSTER_DIR) (kubeconfig: $(CLUSTER_DIR)/kubeconfig)
	bash hack/control-plane/up.sh $(CLUSTER_DIR)

cluster-down: ## stop exactly what cluster-up started
	bash hack/control-plane/down.sh $(CLUSTER_DIR)

e2e-kind: ## for users with Docker: kind cluster, real images, helm install, the quickstart LoadTest to Succeeded
	bash hack/e2e-kind.sh

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
