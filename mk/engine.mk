# Built-in inference engine (inference/gguf, inference/engine).

REFHARNESS_DIR := $(OUT)/refharness

# llama.cpp reference for the engine's parity tests and bench: the prebuilt CPU
# library from npm, installed without running install scripts into out/.
engine-refharness: ## install the llama.cpp reference (node-llama-cpp) into out/refharness
	@command -v node >/dev/null || { echo "engine-refharness: node is needed (Debian: nodejs npm)"; exit 1; }
	@mkdir -p $(REFHARNESS_DIR)
	@cp inference/engine/refharness/package.json $(REFHARNESS_DIR)/package.json
	@test -d $(REFHARNESS_DIR)/node_modules/@node-llama-cpp/linux-x64 || \
		(cd $(REFHARNESS_DIR) && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)

DEBS += nodejs npm
TEST_PREREQS += engine-refharness

ENGINE_BENCH_THREADS ?= 2
bench-engine: engine-refharness ## engine vs llama.cpp: prompt and generation tok/s on generated qwen2-0.5B/llama-1B shapes
	$(GO) test -run '^$$' -bench 'BenchmarkVsLlamaCpp' -benchtime 1x -timeout 60m ./inference/engine/ -args -engine.bench -engine.threads=$(ENGINE_BENCH_THREADS)

.PHONY: engine-refharness bench-engine
