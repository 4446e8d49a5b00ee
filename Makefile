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

## make demo: install, tune a real workload, print the result table, then write the profile report
## of that run (HTML; its path is printed last).  The demo's tuning database is its own, fresh each
## time, under build/ (gitignored, removed by `make clean`): the report shows what this demo tuned,
## not whatever the default database (~/.cache/tilewise/records.db) holds.
DEMO_DB     ?= build/demo/records.db
DEMO_REPORT ?= build/demo/report.html
demo: $(STAMP)
	$(VENV)/bin/tilewise info
	@mkdir -p $(dir $(DEMO_DB)) && rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(VENV)/bin/tilewise tune matmul:512x512x512:f32 --trials 24 --threads 1 --db $(DEMO_DB)
	$(VENV)/bin/tilewise report --db $(DEMO_DB) --out $(DEMO_REPORT)

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
