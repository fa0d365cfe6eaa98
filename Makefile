# The README's commands. Everything installs into .venv, so they work as root or not.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/quickstart
LISTEN ?= 127.0.0.1:9191

.PHONY: serve test lint bench proto docs install install-test install-bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[redis,opa,prometheus]'
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[redis,opa,prometheus,test]'
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[redis,opa,prometheus,test,bench]'
	@touch $@

install: $(VENV)/.installed

serve: $(VENV)/.installed
	$(BIN)/policy serve --config $(CONFIG) --listen $(LISTEN)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (rules in pyproject.toml) and mypy --strict on the SDK; `make test` runs both too.
lint: $(VENV)/.installed-test
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

bench: $(VENV)/.installed-bench
	@# h2load (Debian's nghttp2-client) drives gRPC load from C; without it the benchmarks fall back
	@# to a Python client, which saturates first. Installed when we may (root with apt), else said.
	@command -v h2load >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get install -y -qq nghttp2-client >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq nghttp2-client)) \
	  || echo "note: h2load not installed (apt-get install nghttp2-client); using the Python load client"; }
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Regenerate policy/v1 from proto/; `make proto PROTO_ARGS=--check` only reports stale files.
proto: $(VENV)/.installed-test
	$(BIN)/python -m policy._protogen $(PROTO_ARGS)

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[redis,opa,prometheus,docs]'
	@touch $@

# Regenerate docs/adapters/ from the built-in adapters' own declarations (params schema, module docstring)
# and docs/sdk.md (the SDK reference's page), then build the site (MkDocs + mkdocstrings) into build/site.
docs: $(VENV)/.installed-docs
	$(BIN)/policy adapters --markdown --no-autoload --out docs/adapters
	$(BIN)/python -m policy.sdk_reference docs/sdk.md
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info
