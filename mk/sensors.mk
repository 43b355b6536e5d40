# sensors/: ecological sensors, energy metering, time-series store.
.PHONY: bench-sensors fuzz-sensors

bench-sensors: ## sensors: store write rate, chart query latency, size per stream-year
	$(GO) test -run '^$$' -bench 'Write' -benchtime 200x ./sensors/store
	$(GO) test -run '^$$' -bench 'Series' -benchtime 20x ./sensors/store
	$(GO) test -run '^$$' -bench 'VsRawScan' -benchtime 10x ./sensors/store
	$(GO) test -run '^$$' -bench 'StoreSize' -benchtime 1x ./sensors/store
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./sensors/sim

fuzz-sensors: ## sensors: run every fuzz target for 15 s
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeConfig$$' -fuzztime 15s ./sensors/obs
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRaw$$' -fuzztime 15s ./sensors/store
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeAggregate$$' -fuzztime 15s ./sensors/store
	$(GO) test -run '^$$' -fuzz '^FuzzParseW1Slave$$' -fuzztime 15s ./sensors/drivers
	$(GO) test -run '^$$' -fuzz '^FuzzParseProcStat$$' -fuzztime 15s ./sensors/energy
	$(GO) test -run '^$$' -fuzz '^FuzzParseTimeFilter$$' -fuzztime 15s ./sensors
	$(GO) test -run '^$$' -fuzz '^FuzzParseSeriesQuery$$' -fuzztime 15s ./sensors
	$(GO) test -run '^$$' -fuzz '^FuzzSensorThingsPath$$' -fuzztime 15s ./sensors
