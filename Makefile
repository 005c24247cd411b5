# Two commands on a fresh machine (Python >= 3.11 and a C compiler):
#   make run    create .venv, install (compiles the Cython), start the server on embedded defaults
#   make test   create .venv, install, run the full test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SOURCES := $(shell find src -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi') \
           pyproject.toml CMakeLists.txt

.PHONY: run test install bench plugins clean

run: $(STAMP)
	$(VENV)/bin/nexus serve

# The suite (lint, types and import contracts included: tests/test_sourcecode.py) under
# coverage, the `nexus serve` processes it starts included; then the Cython modules' line
# coverage from a traced build of them.
test: $(STAMP)
	$(PY) -m pytest --cov --cov-report=term
	$(PY) tests/speedups_coverage.py

install: $(STAMP)

$(STAMP): $(SOURCES)
	@echo "==> Creating $(VENV) and installing Nexus into it (the first time takes a few"
	@echo "    minutes: pip fetches the dependencies and compiles the Cython extensions)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "==> pip install '.[test]' (dependencies, then the Cython build of nexus._speedups)"
	$(PY) -m pip install --quiet --progress-bar off '.[test]'
	@echo "==> Installed; the next runs start at once unless the sources change"
	touch $@

# The example Wasm plugins (examples/plugins), built from their C and WAT sources.
plugins: $(STAMP)
	$(PY) examples/plugins/build.py --out build/plugins

bench: $(STAMP)
	$(PY) -m pytest benchmarks/micro --benchmark-enable -p no:cacheprovider -q
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build data .coverage .coverage.*
