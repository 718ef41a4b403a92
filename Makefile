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

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/hot_path.py
	$(BIN)/python bench/ingest.py $(if $(CHAINSIGHT_TEST_POSTGRES_URL),--postgres $(CHAINSIGHT_TEST_POSTGRES_URL))

demo: $(STAMP)
	LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_OFFLINE_MODE=true LITELLM_MODE=PRODUCTION HF_HUB_OFFLINE=1 LANGSMITH_TRACING=false $(BIN)/chainsight demo --count 300 --concurrency 8 --seed 7
	if $(BIN)/chainsight --help 2>/dev/null | grep -qw tui; then $(BIN)/chainsight tui; else $(BIN)/chainsight traces; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
