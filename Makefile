# Chainsight: make venv | test | lint | bench | demo
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline-safe settings (see FIELD_NOTES): no network fetches, no .env loading.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_OFFLINE_MODE := true
export LITELLM_MODE := PRODUCTION
export HF_HUB_OFFLINE := 1
export LANGSMITH_TRACING := false

.PHONY: venv test lint bench demo clean

venv: $(STAMP)

# The first run downloads several hundred MB of packages from PyPI (or your
# index); later runs reuse .venv and need no network. Versions are pinned by
# constraints.txt, so every checkout tests against the same ones.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "Chainsight needs Python 3.11 or newer, but '$(PYTHON)' is: $$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo 'not found')." >&2; \
	    echo "Name a newer one, e.g.: make $(MAKECMDGOALS) PYTHON=python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

# mypy must see the package as it installs (chainsight.framework is framework/,
# ...): it checks a tree of links that lays the folders out that way. Run from
# the repository root, it would find no module named chainsight.* and treat
# every cross-module import as Any.
TYPECHECK := build/typecheck
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/chainsight
	ln -s $(CURDIR)/chainsight/* $(TYPECHECK)/chainsight/
	for folder in framework plugins storage tui; do ln -s $(CURDIR)/$$folder $(TYPECHECK)/chainsight/$$folder; done
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p chainsight

bench: $(STAMP)
	$(BIN)/python bench/hot_path.py
	$(BIN)/python bench/ingest.py $(if $(CHAINSIGHT_TEST_POSTGRES_URL),--postgres $(CHAINSIGHT_TEST_POSTGRES_URL))

# The demo records into its own store, replaced on every run (so runs do not
# pile up 300 traces each), never into ./chainsight.db.
DEMO_DIR := .demo
DEMO_DB := sqlite:///$(DEMO_DIR)/chainsight-demo.db

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	@echo "make demo: recording into a fresh demo store, $(DEMO_DIR)/chainsight-demo.db (each run replaces the previous one)"
	$(BIN)/chainsight demo --db "$(DEMO_DB)" --count 300 --concurrency 8 --seed 7
	if $(BIN)/chainsight --help 2>/dev/null | grep -qw tui; then $(BIN)/chainsight tui --db "$(DEMO_DB)"; else $(BIN)/chainsight traces --db "$(DEMO_DB)"; fi

clean:
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
