# Keyward — every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: help tools build test lint unit integration bench bench-operator bench-node soak demo image image-tars install-plugin fuzz crds clean envtest-start envtest-stop node-start

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

tools: ## Install or locate kube-apiserver, etcd, kubectl, helm and the node (first run builds Kubernetes, ~10 min)
	@hack/envtest.sh tools
	@hack/envtest.sh node-tools >/dev/null

build: ## Build the keyward binary
	$(CARGO) build --release --locked

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit: ## Unit and property tests of the pure core (no cluster)
	$(CARGO) test --locked --lib --bins

integration: tools ## Integration tests only, on a real API server and node
	KEYWARD_IMAGE_PROFILE=quick-release hack/images.sh
	$(CARGO) test --locked --tests

crds: ## Regenerate crds/ and the chart's copy from the Rust types
	$(CARGO) run --quiet --locked -- crd > crds/licenses.keyward.dev.yaml
	cp crds/licenses.keyward.dev.yaml charts/keyward/crds/licenses.keyward.dev.yaml

envtest-start: tools ## Start a local kube-apiserver + etcd in .envtest/ (KUBECONFIG=.envtest/kubeconfig)
	@hack/envtest.sh start

node-start: tools image-tars ## The same with a real node running the images of target/images
	@hack/envtest.sh start --node

envtest-stop: ## Stop the control plane started by envtest-start
	@hack/envtest.sh stop

test: tools lint ## Everything: lint, unit, property and integration tests on a real API server and node
	KEYWARD_IMAGE_PROFILE=quick-release hack/images.sh
	$(CARGO) test --locked --all-targets

bench: ## Criterion benchmarks of the core, then the operator benchmarks; figures go in the README
	$(CARGO) bench --locked --bench verify
	$(MAKE) bench-operator bench-node

bench-operator: tools ## Operator benchmarks on a local control plane: cold start, memory, rotation propagation
	$(CARGO) bench --locked --bench operator

bench-node: tools image-tars ## Rotation to the workload on a real node: nudged, not nudged, bare kubelet resync
	$(CARGO) bench --locked --bench node

soak: tools ## Long run under continuous change (SOAK_MINUTES, default 10): reconciles/s, p99 per window, RSS, fds
	$(CARGO) bench --locked --bench soak

demo: ## Main job end to end on a local control plane: mint, verify, roll out, renew, refuse
	@hack/demo.sh

image-tars: ## The same images as tars in target/images, without a container engine (static binaries)
	hack/images.sh

image: ## Container images of keyward and the example workload (needs docker or podman)
	$${CONTAINER_ENGINE:-docker} build --target keyward -t $${IMAGE:-ghcr.io/keyward/keyward:0.1.0} .
	$${CONTAINER_ENGINE:-docker} build --target license-watcher -t $${WATCHER_IMAGE:-ghcr.io/keyward/license-watcher:0.1.0} .

install-plugin: build ## Install keyward and the `kubectl keyward` plugin link into ~/.local/bin
	install -D target/release/keyward $$HOME/.local/bin/keyward
	ln -sf keyward $$HOME/.local/bin/kubectl-keyward

fuzz: ## Fuzz both token parsers (needs cargo-fuzz; FUZZ_TIME seconds, default 60)
	mkdir -p fuzz/corpus/parse_token
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run parse_token corpus/parse_token seeds -- -max_total_time=$${FUZZ_TIME:-60} $${FUZZ_ARGS:-}

clean: ## Remove build output
	$(CARGO) clean
