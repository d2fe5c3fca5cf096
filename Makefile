# PlanetKube. `make help` lists the targets.

BIN        ?= $(CURDIR)/bin
GO         ?= go
CONTROLLER_GEN = $(BIN)/controller-gen
KUBEBUILDER_ASSETS ?= $(BIN)
NODES      ?= 50
SITES      ?= princeton,mit,berkeley,ethz,tokyo
TEST_TIMEOUT ?= 40m
IMG        ?= planetkube:dev
CHART      ?= charts/planetkube
HELM       ?= $(BIN)/helm

export KUBEBUILDER_ASSETS
export PLANETKUBE_BIN = $(BIN)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## Build the pinned tools (control plane, kwok, controller-gen, helm) into bin/; skips the ones already built.
	@bash hack/tools/build.sh $(BIN)

.PHONY: manifests
manifests: tools ## Generate the CRDs and the manager's and node agent's RBAC from the markers.
	$(CONTROLLER_GEN) rbac:roleName=planetkube-manager crd webhook paths="./api/...;./controllers/...;./internal/admission/...;./internal/authority/...;./internal/manager/...;./internal/webhookcert/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook
	$(CONTROLLER_GEN) rbac:roleName=planetkube-node-agent paths="./internal/agent/..." output:rbac:artifacts:config=config/agent
	@# The chart renders these very files (charts/planetkube/files): its RBAC,
	@# CRDs and webhooks are the generated ones; `make verify` catches drift.
	@rm -rf $(CHART)/files && mkdir -p $(CHART)/files/crds $(CHART)/files/rbac $(CHART)/files/agent $(CHART)/files/webhook
	@cp config/crd/bases/*.yaml $(CHART)/files/crds/
	@cp config/rbac/role.yaml config/rbac/user_roles.yaml config/rbac/metrics_reader.yaml $(CHART)/files/rbac/
	@cp config/agent/role.yaml $(CHART)/files/agent/
	@cp config/webhook/manifests.yaml $(CHART)/files/webhook/

.PHONY: generate
generate: tools ## Generate the API's DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go' | grep -v '^hack/tools/')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: build
build: generate ## Build the planetkube binary into bin/.
	CGO_ENABLED=0 $(GO) build -o $(BIN)/planetkube .

.PHONY: test-deps
test-deps: ## Install the Debian packages the tests need (as root), or print the command and what will skip.
	@bash hack/test-deps.sh

# The tests that skip for want of root, Chromium or binaries append a line to
# $PLANETKUBE_SKIP_LOG (internal/testing/skiplog); the run ends by naming
# them, or saying that none skipped, and keeps go test's exit status.
.PHONY: test
test: test-deps tools manifests generate vet build ## Run every test: unit, envtest, e2e on the emulated cluster, the node agent on the real kernel.
	@log=$$(mktemp -t planetkube-skips.XXXXXX); \
	echo "PLANETKUBE_SKIP_LOG=$$log $(GO) test ./... -count=1 -timeout $(TEST_TIMEOUT)"; \
	PLANETKUBE_SKIP_LOG=$$log $(GO) test ./... -count=1 -timeout $(TEST_TIMEOUT); rc=$$?; \
	bash hack/skip-summary.sh "$$log"; rm -f "$$log"; exit $$rc

.PHONY: verify
verify: manifests generate fmt ## Regenerate and fail if anything changed, then vet.
	git diff --exit-code -- api config $(CHART)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/'))"
	$(GO) vet ./...

.PHONY: image
image: build ## Build the container image as a tarball (dist/planetkube-image.tar, tag $(IMG)) without Docker; `docker load -i` or `kind load image-archive` it.
	$(GO) run ./hack/image --binary $(BIN)/planetkube --tag $(IMG) --out dist/planetkube-image.tar --version $$(git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: lint
lint: tools manifests ## Lint the chart and render it with its defaults and every values file in charts/planetkube/ci.
	$(HELM) lint --strict $(CHART)
	@for f in $(CHART)/ci/*.yaml; do \
		echo "helm template -f $$f"; \
		$(HELM) lint --strict $(CHART) -f $$f >/dev/null && \
		$(HELM) template planetkube $(CHART) --namespace planetkube-system -f $$f >/dev/null || exit 1; \
	done

.PHONY: run
run: tools manifests build ## Start an emulated cluster (NODES fake nodes, default 50, over the sites in SITES) with the manager and the samples.
	$(GO) run ./hack/emulated-cluster --nodes $(NODES) --sites $(SITES) --manager $(BIN)/planetkube

.PHONY: bench
bench: tools manifests build ## Run the benchmarks and write docs/benchmarks.md.
	$(GO) test ./test/bench/ -run 'Bench|SteadyState' -count=1 -timeout 180m -v -args -bench-out=$(CURDIR)/docs/benchmarks.md

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .
