# dask-operator: the single entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE_ROOT ?= $(or $(DASK_OPERATOR_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/dask-operator)
RUST_VERSION := $(shell rustc --version 2>/dev/null | awk '{print $$2}')
# Rust builds are cached outside the work tree, keyed by the compiler version.
export CARGO_TARGET_DIR ?= $(CACHE_ROOT)/cargo-target/rust-$(RUST_VERSION)
export KUBECONFIG := $(CURDIR)/.cluster/kubeconfig

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: demo
demo: cluster-up ## Bring up the local cluster, install the operator with its Helm chart, run the example DaskJob
	cargo build --release --locked
	DASK_OPERATOR_BIN=$(CARGO_TARGET_DIR)/release/dask-operator hack/demo.sh

.PHONY: image
image: ## Build the operator image from the release binary (no Docker) and import it into the local node
	cargo build --release --locked
	hack/images/import-operator-image.sh $(CARGO_TARGET_DIR)/release/dask-operator

.PHONY: test
test: ## Everything: deps, lint, binaries, local cluster, unit + integration tests
	hack/test.sh

.PHONY: deps
deps: ## Install the Debian packages and Rust components the project needs
	hack/install-deps.sh

.PHONY: binaries
binaries: ## Build (or reuse from the cache) the pinned Kubernetes and etcd binaries
	hack/build-binaries.sh

.PHONY: cluster-up
cluster-up: deps binaries ## Start the local cluster (idempotent); kubeconfig in .cluster/kubeconfig
	hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the processes cluster-up started and remove their state
	hack/cluster-down.sh

.PHONY: build
build: ## Build the operator
	cargo build --locked

.PHONY: lint
lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

# make bench: both operators (ours, release build; dask-kubernetes' kopf operator from the pinned wheel,
# tests/conformance/venv.sh) at each size, the raw client, the steady mode. BENCH_SIZES=100 make bench
# for a quick one; JOBS=500 (the old form) is one size. Other settings: benches/support/config.rs.
BENCH_DEFAULT_SIZES := 100,500,1000
BENCH_SIZES ?= $(if $(JOBS),$(JOBS),$(BENCH_DEFAULT_SIZES))
.PHONY: bench
bench: cluster-up ## Ours and the kopf operator side by side (BENCH_SIZES=100,500,1000): table on stdout, benches/RESULTS.md, benches/results.svg, README
	cargo build --release --locked
	kopf="$$(dirname "$$(tests/conformance/venv.sh)")/kopf" && \
	  DASK_OPERATOR_BIN=$(CARGO_TARGET_DIR)/release/dask-operator BENCH_KOPF="$$kopf" BENCH_SIZES=$(BENCH_SIZES) \
	  BENCH_OUT=$(CURDIR)/benches BENCH_README=$(CURDIR)/README.md \
	  cargo bench --locked --bench daskjobs

CHAOS_JOBS ?= 200
CHAOS_CLUSTERS ?= 20
.PHONY: chaos
chaos: cluster-up ## Chaos at full size (CHAOS_JOBS=200): operator killed every 2-5 s, wire faults, control-plane restart, no-write restart; report in .cluster/chaos-report.json
	cargo build --release --locked
	CHAOS_JOBS=$(CHAOS_JOBS) CHAOS_CLUSTERS=$(CHAOS_CLUSTERS) CHAOS_REPORT=$(CURDIR)/.cluster/chaos-report.json \
	  DASK_OPERATOR_BIN=$(or $(DASK_OPERATOR_BIN),$(CARGO_TARGET_DIR)/release/dask-operator) \
	  cargo test --locked --test chaos -- --nocapture

.PHONY: crds
crds: ## Regenerate crds/ from the Rust CRD types, and from it the chart's CRDs and deploy/
	cargo run --quiet --locked -- crd > crds/dask-operator.yaml
	hack/build-binaries.sh helm3
	source hack/lib.sh && python3 charts/generate.py

.PHONY: check-generated
check-generated: ## Fail if crds/, the chart's CRDs or deploy/ differ from what their sources generate
	@cargo run --quiet --locked -- crd | diff -q - crds/dask-operator.yaml >/dev/null \
	  || { echo "crds/dask-operator.yaml is stale: run 'make crds' and commit it"; exit 1; }
	@source hack/lib.sh && python3 charts/generate.py --check

.PHONY: test-chart
test-chart: ## Chart and deploy/ tests without a cluster: helm lint/template (Helm 3 and 4), kustomize
	hack/build-binaries.sh kubernetes helm3 helm4
	source hack/lib.sh && KUBECTL=$$(k8s_bin_dir)/kubectl python3 -m pytest -q tests/deploy

.PHONY: measure-operator
measure-operator: cluster-up ## Figures of the in-cluster operator: image size, helm install to ready, RSS at rest and with N=100 DaskJobs
	cargo build --release --locked
	DASK_OPERATOR_BIN=$(CARGO_TARGET_DIR)/release/dask-operator N=$(or $(N),100) hack/measure/operator-pod.sh
