# Ledger (ledger/): test prerequisites and benchmarks.

LEDGER_NPM := $(OUT)/ledger-npm
LEDGER_JSONLD_VERSION := 9.0.0

DEBS += nodejs
TEST_PREREQS += ledger-jsonld

.PHONY: ledger-jsonld bench-ledger fuzz-ledger

ledger-jsonld: $(LEDGER_NPM)/node_modules/jsonld/package.json ## install jsonld.js (for the ValueFlows JSON-LD test)

$(LEDGER_NPM)/node_modules/jsonld/package.json:
	mkdir -p $(LEDGER_NPM)
	cd $(LEDGER_NPM) && npm install --no-audit --no-fund --silent --prefix . jsonld@$(LEDGER_JSONLD_VERSION)

bench-ledger: ## ledger benchmarks: appends/s, countersigned tx/s, sync entries/s, chain verification
	$(GO) test -run '^$$' -bench . -benchtime 1s -count 1 ./ledger/

fuzz-ledger: ## run every ledger fuzz target for 15s each
	for f in FuzzDecodeTx FuzzDecodeEntry FuzzDecodeProposal FuzzDecodeFork FuzzSyncMessage FuzzSyncStream FuzzCountersignStream; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 15s ./ledger/ || exit 1; done
