# Tokenizer, chat templates, HTTP API and inferd (inference/tokenizer,
# inference/chat, inference/api, packages/inferd).
#
# The tokenizer's differential test against llama.cpp needs the reference
# library installed by engine-refharness (mk/engine.mk, already a test
# prerequisite); without it that test skips.

.PHONY: bench-api

bench-api: engine-refharness ## tokenizer vs llama.cpp (ids and tokens/s), encode/decode benchmarks, HTTP overhead vs the bare engine
	$(GO) test -count=1 -run 'TestParityRandomVsLlamaCpp' -v ./inference/tokenizer/ | grep -E 'identical|ok|FAIL'
	$(GO) test -count=1 -run '^$$' -bench 'Encode|Decode' -benchmem ./inference/tokenizer/
	$(GO) test -count=1 -run '^$$' -bench ServeVsEngine -benchtime 10x ./inference/api/
