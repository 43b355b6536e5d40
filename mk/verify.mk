# Verification committee and reputation: inference/verify, inferd's
# POST /hypha/score (inference/api) and the engine's ScoreBest/ScoreBestFrom.
# No Debian packages needed: the tests run real inference servers on 127.0.0.1.

.PHONY: bench-verify fuzz-verify

bench-verify: ## verifications/min: one-pass /hypha/score vs PlanetServe's per-token requests, same server, model and answers, one run
	GOEXPERIMENT=simd $(GO) test -count=1 -run '^$$' -bench 'VerifyVsPerToken' -benchtime 3x -timeout 60m ./inference/verify/ -args -verify.big
	$(GO) test -count=1 -run 'TestCreditHonestVsImpostor|TestCommitteeCatchesImpostor' -v ./inference/verify/ | grep -E 'credit|epoch|impostor:|^(---|ok|FAIL)'

fuzz-verify: ## fuzz the report, batch and traffic-pattern decoders for 15 s each
	for f in FuzzDecodeReport FuzzDecodeReports FuzzReadReports FuzzPatternOf FuzzAnswerText; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s ./inference/verify || exit 1; \
	done
