# The two set-up commands of README.md: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(or $(LMTX_DATA),../shared/data/reuters21578)
DEMO_OUT ?= runs/reuters-demo
LINT_PATHS := st_lmtx tests benchmarks examples scripts
# llama-cpp-python compiles from source: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)

.PHONY: install model demo test lint docs clean-demo

# torch is pinned to the CPU wheel on this machine's disk: an unpinned torch would pull a multi-GB CUDA build.
$(BIN)/st-lmtx: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install 'torch==2.13.0' -e '.[local,dev]'
	touch $@

install: $(BIN)/st-lmtx

model: install
	$(BIN)/st-lmtx fetch-model

demo: model
	$(BIN)/st-lmtx train --data $(DATA) --teacher local --output-dir $(DEMO_OUT) \
		--max-docs 60 --max-rounds 2 --patience 2 --dev-size 30

# lint, the docs (strict: a broken link or reference fails), the tests, then the built wheel in a fresh venv.
test: model
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mkdocs build --strict -d $(VENV)/site
	LMTX_REQUIRE_LOCAL_TEACHER=1 $(BIN)/python -m pytest -q
	VENV=$(VENV) scripts/check_wheel.sh

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

docs: install
	$(BIN)/mkdocs build --strict -d $(VENV)/site

clean-demo:
	rm -rf $(DEMO_OUT)
