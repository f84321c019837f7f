# README.md's set-up commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(or $(LMTX_DATA),../shared/data/reuters21578)
# llama-cpp-python compiles from source: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)

.PHONY: install model test

# torch is pinned to the CPU wheel on this machine's disk: an unpinned torch would pull a multi-GB CUDA build.
$(BIN)/st-lmtx: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install 'torch==2.13.0' -e '.[local,dev]'
	touch $@

install: $(BIN)/st-lmtx

model: install
	$(BIN)/st-lmtx fetch-model

test: model
	LMTX_REQUIRE_LOCAL_TEACHER=1 $(BIN)/python -m pytest -q
