# Outrigger — build, test and demo. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
OUT       := $(CURDIR)/_output
VERSION   ?= 0.1.0
K8S_VERSION := v1.34.10
SIDECARS  := https-proxy topz config-sync git-sync shard-ambassador
# podman only works here with these settings (runc, cgroupfs, capped ulimits): see hack/podman/containers.conf.
export CONTAINERS_CONF := $(CURDIR)/hack/podman/containers.conf
export PATH := /usr/local/go/bin:$(BIN):$(PATH)
# Tests find kube-apiserver, etcd, kubectl and helm here.
export OUTRIGGER_BIN_DIR := $(BIN)

STATIC := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)'
CONTROL_PLANE := kube-apiserver etcd kubectl kube-controller-manager kube-scheduler kubelet

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

##@ The two commands of the README
.PHONY: demo
demo: tools ## start a local control plane, run the webhook, create an annotated pod, print what was injected
	$(GO) run ./e2e/demo

.PHONY: test
test: deps tools helm ## everything CI runs: gofmt, vet, unit, real peers, e2e through a real API server, images, pods on a real node
	@unformatted=$$($$($(GO) env GOROOT)/bin/gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "not gofmt-formatted (run gofmt -w):" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) test-images
	$(MAKE) test-node

##@ Pieces
.PHONY: deps
deps: ## install the Debian packages the tests use (hack/debian-packages.txt)
	hack/install-deps.sh

.PHONY: tools
tools: $(addprefix $(BIN)/,$(CONTROL_PLANE)) ## build kube-apiserver, etcd, kubectl and the node components from source into ./bin

$(BIN)/etcd: hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ go.etcd.io/etcd/server/v3

$(BIN)/kube-%: hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" -o $@ k8s.io/kubernetes/cmd/kube-$*

$(BIN)/kubectl $(BIN)/kubelet: $(BIN)/%: hack/tools/go.mod hack/tools/go.sum
	cd hack/tools && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" -o $@ k8s.io/kubernetes/cmd/$*

.PHONY: helm
helm: $(BIN)/helm ## build helm from the Go module proxy into ./bin
$(BIN)/helm:
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@v3.22.0

.PHONY: build
build: ## build the webhook, the CLI and the five sidecars (static binaries) into ./_output/bin
	mkdir -p $(OUT)/bin
	$(STATIC) -o $(OUT)/bin/ ./cmd/... $(addprefix ./sidecars/,$(SIDECARS))

##@ Images (podman, FROM scratch, offline)
# Each image is built from a context directory holding its static binary; a sidecar that needs more in its
# context provides sidecars/<name>/image-context.sh, called with the context directory.
.PHONY: images
images: image-outrigger-webhook $(addprefix image-,$(SIDECARS)) ## build every image with podman

.PHONY: image-outrigger-webhook
image-outrigger-webhook:
	rm -rf $(OUT)/ctx/outrigger-webhook && mkdir -p $(OUT)/ctx/outrigger-webhook
	$(STATIC) -o $(OUT)/ctx/outrigger-webhook/outrigger-webhook ./cmd/outrigger-webhook
	podman build -q --pull=never --build-arg VERSION=$(VERSION) -t localhost/outrigger/outrigger-webhook:$(VERSION) -f Dockerfile $(OUT)/ctx/outrigger-webhook

.PHONY: $(addprefix image-,$(SIDECARS))
$(addprefix image-,$(SIDECARS)): image-%:
	rm -rf $(OUT)/ctx/$* && mkdir -p $(OUT)/ctx/$*
	$(STATIC) -o $(OUT)/ctx/$*/$* ./sidecars/$*
	if [ -x sidecars/$*/image-context.sh ]; then sidecars/$*/image-context.sh $(OUT)/ctx/$*; fi
	podman build -q --pull=never --build-arg VERSION=$(VERSION) -t localhost/outrigger/$*:$(VERSION) -f sidecars/$*/Dockerfile $(OUT)/ctx/$*

.PHONY: test-images
test-images: images ## build the images and check them: size, non-root, labels, the binary starts
	OUTRIGGER_IMAGES=1 OUTRIGGER_VERSION=$(VERSION) $(GO) test -count=1 -run TestImages ./e2e/images/

##@ A real node (root: kubelet + containerd + a CNI bridge on this machine)
.PHONY: image-pause
image-pause: ## build the local node's pod sandbox image (e2e/cluster/pause) with podman
	rm -rf $(OUT)/ctx/pause && mkdir -p $(OUT)/ctx/pause
	$(STATIC) -o $(OUT)/ctx/pause/pause ./e2e/cluster/pause
	podman build -q --pull=never --build-arg VERSION=$(VERSION) -t localhost/outrigger/pause:$(VERSION) -f e2e/cluster/pause/Dockerfile $(OUT)/ctx/pause

.PHONY: test-node
test-node: tools image-pause image-topz image-https-proxy image-git-sync ## run injected pods for real on a local node (needs root and `make deps`)
	OUTRIGGER_NODE=1 OUTRIGGER_VERSION=$(VERSION) $(GO) test -count=1 -timeout 10m -v ./e2e/node/

##@ Benchmarks (not part of test; results go to docs/performance.md)
.PHONY: bench
bench: deps tools build ## run every benchmark under bench/
	@for s in bench/*/run.sh; do echo "== $$s"; bash $$s; done

.PHONY: fuzz
fuzz: ## fuzz decode → inject → patch, and https-proxy's head parser against net/http's, 60s each
	$(GO) test -run '^$$' -fuzz FuzzAdmission -fuzztime 60s ./webhook/
	$(GO) test -run '^$$' -fuzz FuzzRequestFastPath -fuzztime 60s ./sidecars/https-proxy/
	$(GO) test -run '^$$' -fuzz FuzzResponseFastPath -fuzztime 60s ./sidecars/https-proxy/

.PHONY: clean
clean: ## remove build output (keeps ./bin, the slow control-plane build)
	rm -rf $(OUT)
