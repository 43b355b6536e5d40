# Hypha — firmware for community-owned edge appliances.
# `make help` lists the targets. Every target installs what it needs.

SHELL := /bin/bash
GO ?= go
OUT := out
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

# Debian packages the build and the tests need; installed only if missing.
DEBS := qemu-system-x86 ovmf e2fsprogs syslinux syslinux-common mtools \
	systemd-boot-efi dosfstools squashfs-tools iproute2 chromium

# Each area adds its own targets, Debian packages (DEBS += …) and test
# prerequisites (TEST_PREREQS += …) in mk/<area>.mk.
TEST_PREREQS :=
-include mk/*.mk

.PHONY: help deps build image image-rpi demo test test-short bench lint fmt clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install missing Debian packages (apt-get update once, then install)
	@missing=""; for p in $(DEBS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || command -v $$p >/dev/null || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: ## build every program for linux/amd64 and linux/arm64
	GOOS=linux GOARCH=amd64 $(GO) build ./...
	GOOS=linux GOARCH=arm64 $(GO) build ./...
	$(GO) build -o $(OUT)/hypha ./packages/hypha

image: deps ## build out/hypha-amd64.img (and out/hypha-rpi.img with image-rpi)
	$(GO) run ./packages/hypha image -target amd64 -version $(VERSION) -o $(OUT)/hypha-amd64.img

image-rpi: deps ## build out/hypha-rpi.img for the Raspberry Pi (arm64)
	$(GO) run ./packages/hypha image -target rpi -version $(VERSION) -o $(OUT)/hypha-rpi.img

DEMO_COMMUNITY := $(OUT)/demo-community

$(DEMO_COMMUNITY)/manifest.json:
	HYPHA_STEWARD_PASSWORD=demo-steward $(GO) run ./packages/hypha community init -dir $(DEMO_COMMUNITY) \
		-name "Demo Valley" -bioregion "Upper Rhine" -location 47.99,7.85 -steward "Demo Steward"

demo: deps $(DEMO_COMMUNITY)/manifest.json ## build the image, boot two appliances in qemu on a virtual LAN, print the LAN page URLs
	$(GO) run ./packages/hypha image -target amd64 -version $(VERSION) -community $(DEMO_COMMUNITY) -o $(OUT)/hypha-amd64.img
	$(GO) run ./packages/hypha vm -image $(OUT)/hypha-amd64.img -nodes 2 -lan 127.0.0.1:8080

test: deps $(TEST_PREREQS) ## the whole test suite (what CI runs)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/systest$$')
	@# the system tests run a dozen appliances at once: alone, so they do not
	@# starve the mesh's and ledger's own namespace tests of the two cores
	$(GO) test -count=1 -timeout 10m ./systest/

test-short: ## unit tests only (no qemu, no namespaces)
	$(GO) test -short -count=1 ./...

bench: ## benchmarks against the references, see BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf $(OUT)

.PHONY: bench-image
bench-image: deps ## image build time (cold and warm), size, boot and update times
	@rm -rf $(OUT)/bench-gocache; mkdir -p $(OUT)
	@echo "cold build (empty GOCACHE):"; s=$$(date +%s.%N); \
	GOCACHE=$$PWD/$(OUT)/bench-gocache $(GO) run ./packages/hypha image -target amd64 -version bench -o $(OUT)/bench.img >/dev/null; \
	awk -v s=$$s -v e=$$(date +%s.%N) 'BEGIN{printf "  %.1f s\n", e-s}'
	@echo "warm build:"; s=$$(date +%s.%N); \
	$(GO) run ./packages/hypha image -target amd64 -version bench -o $(OUT)/bench.img >/dev/null; \
	awk -v s=$$s -v e=$$(date +%s.%N) 'BEGIN{printf "  %.1f s\n", e-s}'
	@echo "image: $$(du -m --apparent-size $(OUT)/bench.img | cut -f1) MiB apparent, $$(du -m $(OUT)/bench.img | cut -f1) MiB on disk"
	@rm -rf $(OUT)/bench-gocache $(OUT)/bench.img*
	$(GO) test -count=1 -v -run TestApplianceBootUpdate -timeout 25m ./images/ | grep BENCH
