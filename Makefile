# The two set-up commands of the README.  Both create .venv and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the tests use: headless Chromium (report rendering test) and a PostgreSQL
# server (shared record store tests, started on loopback by the tests themselves).
SYSDEPS := chromium chromium-driver postgresql
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install sysdeps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: install, then tune a real workload and print the result table
demo: $(STAMP)
	$(VENV)/bin/tilewise info
	$(VENV)/bin/tilewise tune matmul:512x512x512:f32 --trials 24 --threads 1

## make sysdeps: install the Debian packages above when one is missing (needs root or sudo)
sysdeps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing $(SYSDEPS) (Debian packages)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $(SUDO) apt-get install -y -qq --no-install-recommends $(SYSDEPS) >/dev/null; \
	fi

## make test: install, then run the test suite (the JIT tests included: they run on CPU)
test: $(STAMP) sysdeps
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/matmul_space.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
