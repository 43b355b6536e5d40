# The default model (models/, inference/defaultmodel): hypha-kjv-tiny.
#
# `make model` retrains it from scratch and rewrites the embedded GGUF.
# It is a tool of the repository, not part of `make test` or the image: its
# Debian packages are installed by model-deps, not added to DEBS.

MODEL_DEBS := python3-torch python3-numpy python3-regex libopenblas0-pthread bible-kjv bible-kjv-text
MODEL_DIR := $(OUT)/model
MODEL_MINUTES ?= 20
MODEL_MINUTES2 ?= 11
MODEL_PY := /usr/bin/python3
MODEL_GGUF := inference/defaultmodel/hypha-kjv-tiny.gguf

model-deps: ## install the Debian packages the model training needs
	@missing=""; for p in $(MODEL_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; fi

model-data: model-deps ## corpus (KJV from bible-kjv-text), BPE vocabulary, token streams into out/model/data
	mkdir -p $(MODEL_DIR)
	bible -l0 gen1:1-rev22:21 > $(MODEL_DIR)/kjv.txt
	$(MODEL_PY) models/prepare.py --kjv $(MODEL_DIR)/kjv.txt --out $(MODEL_DIR)/data --vocab 2048
	cp $(MODEL_DIR)/data/words.txt $(MODEL_DIR)/data/encode.tsv inference/defaultmodel/testdata/
	head -c 24000 $(MODEL_DIR)/data/val.txt | sed '$$d' > inference/defaultmodel/testdata/heldout.txt

# Two stages, as the shipped model was trained (models/README.md): a first
# run at lr 5e-3, then a second from its weights at lr 2e-3 with a fresh
# optimizer and schedule.
model: model-data ## retrain hypha-kjv-tiny (MODEL_MINUTES + MODEL_MINUTES2 of wall time) and rewrite the embedded GGUF
	rm -rf $(MODEL_DIR)/run $(MODEL_DIR)/run2
	OPENBLAS_NUM_THREADS=2 $(MODEL_PY) models/train.py --data $(MODEL_DIR)/data --out $(MODEL_DIR)/run --minutes $(MODEL_MINUTES)
	OPENBLAS_NUM_THREADS=2 $(MODEL_PY) models/train.py --data $(MODEL_DIR)/data --out $(MODEL_DIR)/run2 --init $(MODEL_DIR)/run/model.pt --lr 2e-3 --seed 2 --minutes $(MODEL_MINUTES2)
	$(MODEL_PY) models/export.py --ckpt $(MODEL_DIR)/run2/model.pt --tokenizer $(MODEL_DIR)/data/tokenizer.json --out $(MODEL_GGUF)
	$(GO) test -count=1 -v ./inference/defaultmodel/

bench-model: ## tokens/s of our engine on the default model (prompt and generation), vs llama.cpp when installed
	GOEXPERIMENT=simd $(GO) test -run '^$$' -bench . -benchtime 3x ./inference/defaultmodel/

.PHONY: model-deps model-data model bench-model
