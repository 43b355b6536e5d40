# mesh: libp2p community mesh (package mesh) and link setup (mesh/netconf).
# The namespace tests run `ip netns` / `ip netns exec` as root.
DEBS += iproute2

.PHONY: bench-mesh fuzz-mesh

bench-mesh: ## mesh figures (root, ~5 min): discovery, partition, churn, idle cost, vs stock libp2p
	@mkdir -p $(OUT)
	set -o pipefail; HYM_BENCH=1 $(GO) test -count=1 -v -timeout 15m -run 'TestNetnsMesh|TestNetnsChurn|TestNetnsReference' ./mesh | tee $(OUT)/bench-mesh.txt | grep -E 'FIGURE|^(--- |ok|FAIL)'
	$(GO) test -run '^$$' -bench 'Announcement' -benchmem ./mesh

fuzz-mesh: ## fuzz every mesh decoder for 15 s each
	for f in FuzzDecodeEnvelope FuzzDecodeAnnouncement FuzzDecodeDigest FuzzReadFrame; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s ./mesh || exit 1; \
	done
