# Mesh inference routing: inference/route (HR-tree, forwarding rule) and
# inference/gateway (OpenAI + Ollama gateway over the mesh).
# The loopback tests run real libp2p hosts and real inferd servers on
# 127.0.0.1; the system tests (systest/route_*) run real appliances in
# network namespaces and need iproute2 and root.
DEBS += iproute2

.PHONY: bench-route bench-route-netns fuzz-route

bench-route: ## HR-tree routing vs round-robin vs least-loaded: median TTFT and latency on 3-node meshes, one run
	HYPHA_BENCH=1 $(GO) test -count=1 -run '^TestBenchRoute$$' -timeout 20m -v ./inference/gateway/ | grep -vE '^(=== RUN|    bench_test)'

bench-route-netns: ## the must-show: HR-tree vs round-robin vs least-loaded between real appliances (hyphad + inferd) in network namespaces, one run (root)
	HYPHA_BENCH=1 $(GO) test -count=1 -run '^TestRouteBenchNetns$$' -timeout 45m -v ./systest/

fuzz-route: ## fuzz the route and gateway decoders for 15 s each
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCacheState$$' -fuzztime 15s ./inference/route
	for f in FuzzReadRequest FuzzResponse FuzzDecodeRequest FuzzDecodeLoad FuzzQueuedOf; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s ./inference/gateway || exit 1; \
	done
