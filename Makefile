# The two set-up commands of the README.  Both create .venv and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench clean

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

## make test: install, then run the test suite (the JIT tests included: they run on CPU)
test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/matmul_space.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
