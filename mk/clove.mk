# mesh/clove: anonymous requests as S-IDA cloves over onion paths.
# mesh/clove's tests run real libp2p hosts on 127.0.0.1; the namespace test
# (systest/clove_test.go) runs appliances in network namespaces: iproute2.
DEBS += iproute2

.PHONY: bench-clove fuzz-clove

bench-clove: ## clove benchmarks: S-IDA throughput, wire expansion vs PlanetServe, per-hop latency
	$(GO) test -run '^$$' -bench 'Split|Combine|Expansion|Onion' -benchtime 2s ./mesh/clove
	$(GO) test -run '^$$' -bench 'RequestLatency' -benchtime 200x ./mesh/clove

fuzz-clove: ## fuzz every clove decoder for 15 s each
	for f in FuzzDecodeClove FuzzPeel FuzzPeelDeliver FuzzParseRouting FuzzReadFrame FuzzOpenReply FuzzCandidate; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s ./mesh/clove || exit 1; \
	done

.PHONY: bench-clove-netns
bench-clove-netns: ## anonymous vs direct chat latency through one gateway, real appliances in network namespaces (root)
	$(GO) test -count=1 -timeout 60m -run '^TestCloveLatencyNetns$$' -v ./systest -args -clove.bench
