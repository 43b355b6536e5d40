# Built-in inference engine (inference/gguf, inference/engine).

REFHARNESS_DIR := $(OUT)/refharness

# llama.cpp reference for the engine's parity tests and bench: the prebuilt CPU
# library from npm, installed without running install scripts into out/.
engine-refharness: ## install the llama.cpp reference (node-llama-cpp) into out/refharness
	@command -v node >/dev/null || { echo "engine-refharness: node is needed (Debian: nodejs)"; exit 1; }
	@command -v npm >/dev/null || { SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm >/dev/null; }
	@mkdir -p $(REFHARNESS_DIR)
	@cp inference/engine/refharness/package.json $(REFHARNESS_DIR)/package.json
	@test -d $(REFHARNESS_DIR)/node_modules/@node-llama-cpp/linux-x64 || \
		(cd $(REFHARNESS_DIR) && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)

# npm is installed by engine-refharness only when missing: nodesource's nodejs
# ships its own npm and conflicts with Debian's npm package.
DEBS += nodejs
TEST_PREREQS += engine-refharness

ENGINE_BENCH_THREADS ?= 2
bench-engine: engine-refharness ## engine vs llama.cpp: prompt and generation tok/s on generated qwen2-0.5B/llama-1B shapes
	GOEXPERIMENT=simd $(GO) test -run '^$$' -bench BenchmarkVsLlamaCpp -benchtime 1x -timeout 90m ./inference/engine/ -args -engine.bench -engine.threads=$(ENGINE_BENCH_THREADS)

.PHONY: engine-refharness bench-engine

# CI builds and tests the GOEXPERIMENT=simd kernels too (the plain `go test`
# of make test covers the portable fallback).
engine-simd-test:
	GOEXPERIMENT=simd $(GO) vet ./inference/engine/...
	GOEXPERIMENT=simd $(GO) test -count=1 ./inference/engine/quant/
TEST_PREREQS += engine-simd-test
.PHONY: engine-simd-test
