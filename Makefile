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
CONTROL_PLANE := etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

##@ The two commands of the README
.PHONY: demo
demo: ## Outrigger at work on a local cluster: helm install, an app with https-proxy + topz + config-sync, each one shown working
	@hack/demo-preflight.sh
	@$(MAKE) --no-print-directory cluster
	$(GO) run ./e2e/demo

.PHONY: demo-quick
demo-quick: tools ## the control plane only (no node, no root): run the webhook, create annotated pods, print what was injected
	$(GO) run ./e2e/demo/quick

.PHONY: test
test: deps tools helm ## everything CI runs: gofmt, vet, unit, real peers, e2e through a real API server, images, pods on a real cluster
	@unformatted=$$($$($(GO) env GOROOT)/bin/gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "not gofmt-formatted (run gofmt -w):" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) test-race
	$(MAKE) test-images
	$(MAKE) test-node

##@ Pieces
.PHONY: deps
deps: ## install the Debian packages the tests use (hack/debian-packages.txt)
	hack/install-deps.sh

.PHONY: tools
tools: ## build the cluster's binaries from source into ./bin (kube-apiserver, etcd, kubectl, controllers, kubelet, kube-proxy)
	@hack/build-tools.sh $(BIN) $(K8S_VERSION) $(CONTROL_PLANE)

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
# context provides sidecars/<name>/image-context.sh, called with the context directory. The webhook's and
# the sidecars' images are tagged with the names the chart and the catalog use (REGISTRY) and with
# localhost/outrigger; `make images` loads them into the local cluster's node when one runs (`make cluster`).
REGISTRY := ghcr.io/outrigger-dev
LOCAL    := localhost/outrigger
# What the local cluster's node is given: nothing is ever pulled there.
CLUSTER_IMAGES := $(addprefix $(REGISTRY)/,$(addsuffix :$(VERSION),outrigger-webhook $(SIDECARS))) \
                  $(addprefix $(LOCAL)/,$(addsuffix :$(VERSION),e2e-app redis memcached))
LOCALCLUSTER := $(OUT)/bin/localcluster
CLUSTER_DIR  := $(OUT)/cluster

IMAGES := outrigger-webhook $(SIDECARS) pause coredns e2e-app redis memcached

.PHONY: images
images: ## build every image with podman (and load them into the local cluster if one runs)
	@echo "images: building $(words $(IMAGES)) images with podman (static Go binaries, FROM scratch)"; start=$$SECONDS; \
	$(MAKE) --no-print-directory $(addprefix image-,$(IMAGES)); \
	echo "images: done in $$((SECONDS - start))s"
	@if [ -x $(LOCALCLUSTER) ] && $(LOCALCLUSTER) running --dir $(CLUSTER_DIR); then $(LOCALCLUSTER) load --dir $(CLUSTER_DIR) $(CLUSTER_IMAGES); fi

.PHONY: image-outrigger-webhook
image-outrigger-webhook:
	@rm -rf $(OUT)/ctx/outrigger-webhook && mkdir -p $(OUT)/ctx/outrigger-webhook
	@$(STATIC) -o $(OUT)/ctx/outrigger-webhook/outrigger-webhook ./cmd/outrigger-webhook
	@hack/build-image.sh outrigger-webhook Dockerfile $(OUT)/ctx/outrigger-webhook $(VERSION) $(REGISTRY)/outrigger-webhook:$(VERSION) $(LOCAL)/outrigger-webhook:$(VERSION)

.PHONY: $(addprefix image-,$(SIDECARS))
$(addprefix image-,$(SIDECARS)): image-%:
	@rm -rf $(OUT)/ctx/$* && mkdir -p $(OUT)/ctx/$*
	@$(STATIC) -o $(OUT)/ctx/$*/$* ./sidecars/$*
	@if [ -x sidecars/$*/image-context.sh ]; then sidecars/$*/image-context.sh $(OUT)/ctx/$*; fi
	@hack/build-image.sh $* sidecars/$*/Dockerfile $(OUT)/ctx/$* $(VERSION) $(REGISTRY)/$*:$(VERSION) $(LOCAL)/$*:$(VERSION)

.PHONY: image-pause
image-pause: ## the local node's pod sandbox image (e2e/cluster/pause)
	@rm -rf $(OUT)/ctx/pause && mkdir -p $(OUT)/ctx/pause
	@$(STATIC) -o $(OUT)/ctx/pause/pause ./e2e/cluster/pause
	@hack/build-image.sh pause e2e/cluster/pause/Dockerfile $(OUT)/ctx/pause $(VERSION) $(LOCAL)/pause:$(VERSION)

.PHONY: image-coredns
image-coredns: ## the local cluster's DNS server: CoreDNS from the Go module proxy (e2e/cluster/coredns)
	@rm -rf $(OUT)/ctx/coredns && mkdir -p $(OUT)/ctx/coredns
	@cd e2e/cluster/coredns && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(OUT)/ctx/coredns/coredns .
	@hack/build-image.sh coredns e2e/cluster/coredns/Dockerfile $(OUT)/ctx/coredns $(VERSION) $(LOCAL)/coredns:$(VERSION)

.PHONY: image-e2e-app
image-e2e-app: ## the tests' and the demo's app (e2e/node/testapp)
	@rm -rf $(OUT)/ctx/e2e-app && mkdir -p $(OUT)/ctx/e2e-app
	@$(STATIC) -o $(OUT)/ctx/e2e-app/app ./e2e/node/testapp
	@hack/build-image.sh e2e-app e2e/node/testapp/Dockerfile $(OUT)/ctx/e2e-app $(VERSION) $(LOCAL)/e2e-app:$(VERSION)

.PHONY: image-redis image-memcached
image-redis image-memcached: image-%: ## the examples' shards: Debian's redis-server / memcached in FROM-scratch images
	@rm -rf $(OUT)/ctx/$* && mkdir -p $(OUT)/ctx/$*
	@examples/images/copy-binary.sh $(OUT)/ctx/$* $(if $(filter redis,$*),/usr/bin/redis-server,/usr/bin/memcached)
	@hack/build-image.sh $* examples/images/$*/Dockerfile $(OUT)/ctx/$* $(VERSION) $(LOCAL)/$*:$(VERSION)

.PHONY: test-images
test-images: images ## build the images and check them: size, non-root, labels; each sidecar started as in a pod passes its probes
	OUTRIGGER_IMAGES=1 OUTRIGGER_VERSION=$(VERSION) $(GO) test -count=1 ./e2e/images/

##@ A local cluster (root: kubelet, containerd, kube-proxy, CoreDNS and a CNI bridge on this machine)
.PHONY: cluster
cluster: deps tools helm images $(LOCALCLUSTER) ## start the local cluster in the background (state in _output/cluster) and print the KUBECONFIG line
	@$(LOCALCLUSTER) up --dir $(CLUSTER_DIR) $(CLUSTER_IMAGES)

.PHONY: cluster-down
cluster-down: $(LOCALCLUSTER) ## stop the local cluster and put the host back (also after a killed run)
	@$(LOCALCLUSTER) down --dir $(CLUSTER_DIR)

.PHONY: $(LOCALCLUSTER)
$(LOCALCLUSTER):
	@mkdir -p $(OUT)/bin
	@$(GO) build -o $@ ./e2e/localcluster

.PHONY: test-node
test-node: tools helm images ## run injected pods for real on a local cluster, the webhook installed by helm (needs root and `make deps`)
	OUTRIGGER_NODE=1 OUTRIGGER_VERSION=$(VERSION) $(GO) test -count=1 -timeout 20m -v ./e2e/node/
	OUTRIGGER_NODE=1 $(GO) test -count=1 -timeout 10m -v ./e2e/localcluster/

.PHONY: test-race
test-race: deps tools ## the sidecars, the shared internal packages and the injection core again under the race detector
	$(GO) test -count=1 -race -timeout 20m ./sidecars/... ./internal/... ./webhook/...

.PHONY: examples
examples: cluster ## deploy the book's examples on the running cluster, one line of result each
	OUTRIGGER_NODE=1 OUTRIGGER_KUBECONFIG=$(CLUSTER_DIR)/run/kubeconfig $(GO) test -count=1 -v -run TestExamples ./e2e/node/ | grep -E "result:|--- (PASS|FAIL)"

##@ Benchmarks (not part of test; results go to docs/performance.md)
.PHONY: bench
bench: deps tools build ## run every benchmark under bench/, then a summary table (_output/bench/summary.md); BENCH_QUICK=1: ~5 min
	bash bench/all.sh

.PHONY: fuzz
fuzz: ## fuzz decode → inject → patch, the annotation values, https-proxy's head parser against net/http's, shard-ambassador's RESP and memcache clients, 60s each
	$(GO) test -run '^$$' -fuzz FuzzAdmission -fuzztime 60s ./webhook/
	$(GO) test -run '^$$' -fuzz FuzzAnnotationValues -fuzztime 60s ./webhook/
	$(GO) test -run '^$$' -fuzz FuzzRequestFastPath -fuzztime 60s ./sidecars/https-proxy/httphead/
	$(GO) test -run '^$$' -fuzz FuzzResponseFastPath -fuzztime 60s ./sidecars/https-proxy/httphead/
	$(GO) test -run '^$$' -fuzz FuzzRedisCommand -fuzztime 60s ./sidecars/shard-ambassador/
	$(GO) test -run '^$$' -fuzz FuzzMemcacheClient -fuzztime 60s ./sidecars/shard-ambassador/

.PHONY: clean
clean: ## remove build output (keeps ./bin, the slow control-plane build)
	rm -rf $(OUT)
