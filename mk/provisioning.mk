# provisioning/ (community, invites, flash) and hwtest/.
# The flash tests attach loop devices (losetup, from Debian "mount"), format
# and mount a partition (mkfs.ext4 from e2fsprogs); the flash benchmark
# compares with dd and sha256sum (coreutils). They skip without root.
DEBS += mount e2fsprogs coreutils

.PHONY: bench-provisioning fuzz-provisioning

HWTEST_GGUF ?= $(OUT)/engine-bench/qwen2-0.5B-Q8_0.gguf
bench-provisioning: ## flash throughput vs dd and dd+sha256sum; bandwidth probe vs a plain copy; predicted vs engine tok/s
	$(GO) test -run '^$$' -bench 'Flash' -benchtime 1x ./provisioning/flash
	$(GO) test -run '^$$' -bench 'BandwidthProbe' -benchtime 10x ./hwtest
	@if [ -f $(HWTEST_GGUF) ]; then \
		GOEXPERIMENT=simd $(GO) test -run '^$$' -bench PredictionVsEngine -benchtime 1x ./packages/hwtest -args -hwtest.gguf=$(abspath $(HWTEST_GGUF)); \
	else echo "bench-provisioning: no $(HWTEST_GGUF) (make bench-engine generates it): prediction vs engine skipped"; fi

fuzz-provisioning: ## fuzz manifest, invite, PSK, steward key file and hwtest report decoders for 15 s each
	for f in FuzzManifest FuzzInvite FuzzParsePSK FuzzOpenStewardKey; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s ./provisioning || exit 1; \
	done
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeReport$$' -fuzztime 15s ./hwtest
