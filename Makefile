# Two commands for a fresh clone: `make sweep` and `make test` (each sets up what is missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SWEEP ?= default
SCALE ?= cpu
ARGS ?=
BENCH ?= update_cost seed_throughput meta_throughput
FASHION_MNIST_DEB_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data sweep figures sweep-figures paper bench gpu-check test lint help meta-train \
	checkpoints notebooks

help:
	@echo "make setup            create $(VENV) and install the data set (Debian package) if missing"
	@echo "make sweep            run the default sweep; SWEEP=<preset> ARGS='<hydra overrides>'"
	@echo "make figures          the paper's figures from the tables on disk -> results/paper/"
	@echo "make paper            run the sweeps the figures need, then draw them; SCALE=cpu|gpu"
	@echo "make sweep-figures    redraw each results/*/figures from its own tables"
	@echo "make notebooks        pair notebooks/*.py with .ipynb notebooks (jupytext --sync)"
	@echo "make bench            speed benchmarks into results/bench/; BENCH=<name> ARGS='<args>'"
	@echo "make gpu-check        on a GPU: path agreement, update cost to 100M, memory per optimizer"
	@echo "make meta-train       meta-train LOPT=<learned optimizer> (ARGS='<hydra overrides>')"
	@echo "make checkpoints      rerun the recipes of the shipped meta-trained checkpoints"
	@echo "make docs             regenerate the tables of measured numbers in docs/ (CHECK=1: check)"
	@echo "make test             run the test suite"
	@echo "make lint             ruff"

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Fashion-MNIST from Debian's package where apt-get can install it; otherwise say how to get it.
data:
	@if [ -n "$$FASHION_MNIST_DIR" ] || [ -f $(FASHION_MNIST_DEB_DIR)/train-images-idx3-ubyte.gz ]; then \
		exit 0; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else \
		echo "note: Fashion-MNIST is not installed. Run 'sudo apt-get install dataset-fashion-mnist'"; \
		echo "      or set FASHION_MNIST_DIR to a folder with the four standard IDX files."; \
	fi

sweep: setup
	$(PY) -m bench.sweep sweep=$(SWEEP) $(ARGS)

figures: setup
	$(PY) -m bench.figures.paper

paper: setup
	$(PY) -m bench.paper --scale $(SCALE)

sweep-figures: setup
	$(PY) -m bench.figures.sweep

# The percent scripts are the source; the .ipynb twins are made (and kept in sync) on demand.
notebooks: setup
	$(VENV)/bin/jupytext --sync notebooks/*.py

# Each benchmark is a module bench/benchmarks/<name>.py; ARGS go to each (pick one: BENCH=<name>).
bench: setup
	for name in $(BENCH); do $(PY) -m bench.benchmarks.$$name $(ARGS) || exit 1; done

# On a machine with a GPU (JAX with CUDA in the venv): the execution paths' agreement tests,
# the update benchmark at 1M, 10M and 100M parameters with its floors, and every optimizer's
# device peak memory and NVML reading on the standard task (conf/sweep/memory.yaml), all into
# results/gpu_check/ (sized for under 8 minutes on an H100; a stacked reference path that
# outgrows the device at 100M is skipped and says so).
GPU_CHECK ?= results/gpu_check
gpu-check: setup
	$(PY) -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu' and 'no GPU: ' + jax.default_backend())"
	$(PY) -m pytest -q tests/test_learned_architectures.py tests/test_small_fc_lopt.py \
		-k "path or normalisation"
	$(PY) -m bench.benchmarks.update_cost --sizes 1000000 10000000 100000000 --repeats 10 \
		--out $(GPU_CHECK)
	$(PY) -m bench.sweep sweep=memory results_dir=$(GPU_CHECK)

LOPT ?= small_fc_lopt
meta-train: setup
	$(PY) -m bench.meta_train optimizer=$(LOPT) $(ARGS)

# The recipes of the checkpoints shipped in optimizers/learned/checkpoints/ (see its README):
# PES on the standard task, outer Adam 3e-3 with warmup and cosine decay; `make -k` goes on
# past a failed one. Hidden size 1 starts from seed 2: at seed 0 the weight between its two
# width-1 ReLU layers is negative, every update is zero and PES sees no signal.
CHECKPOINTS := optimizers/learned/checkpoints
META_RECIPE := outer.learning_rate=0.003 outer.warmup_steps=100 outer.eval_every=250
checkpoints: $(CHECKPOINTS)/small_fc_lopt.npz $(CHECKPOINTS)/small_fc_lopt_hidden1.npz \
	$(CHECKPOINTS)/small_fc_lopt_hidden16.npz $(CHECKPOINTS)/small_fc_lopt_no_factored.npz \
	$(CHECKPOINTS)/mlp_lopt.npz $(CHECKPOINTS)/small_fc_lopt_family.npz \
	$(CHECKPOINTS)/mlp_lopt_family.npz $(CHECKPOINTS)/small_fc_lopt_no_factored_family.npz \
	$(CHECKPOINTS)/small_fc_lopt_wide_family.npz $(CHECKPOINTS)/small_fc_lopt_linear.npz \
	$(CHECKPOINTS)/small_fc_lopt_linear_wide_family.npz $(CHECKPOINTS)/small_fc_lopt_lean.npz \
	$(CHECKPOINTS)/small_fc_lopt_lean_wide_family.npz \
	$(CHECKPOINTS)/small_fc_lopt_lagged_wide_family.npz

$(CHECKPOINTS)/small_fc_lopt.npz: | setup
	$(PY) -m bench.meta_train optimizer=small_fc_lopt outer.steps=6000 $(META_RECIPE) ship=$@
$(CHECKPOINTS)/small_fc_lopt_hidden1.npz: | setup
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.hidden_size=1 \
		optimizer.seed=2 name=small_fc_lopt_hidden1 outer.steps=3000 $(META_RECIPE) ship=$@
$(CHECKPOINTS)/small_fc_lopt_hidden16.npz: | setup
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.hidden_size=16 \
		name=small_fc_lopt_hidden16 outer.steps=3000 $(META_RECIPE) ship=$@
$(CHECKPOINTS)/small_fc_lopt_no_factored.npz: | setup
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.use_factored=false \
		optimizer.use_factored_momenta=false name=small_fc_lopt_no_factored outer.steps=3000 \
		$(META_RECIPE) ship=$@
# The linear design (update benchmark's small_fc_lopt/linear): no hidden layer, no factored
# features, no parameter feature, one momentum at 0.99.
LINEAR := optimizer.use_factored=false optimizer.use_factored_momenta=false \
	'optimizer.momentum_decays=[0.99]' optimizer.hidden_layers=0 optimizer.use_param=false
$(CHECKPOINTS)/small_fc_lopt_linear.npz: | setup
	$(PY) -m bench.meta_train optimizer=small_fc_lopt $(LINEAR) name=small_fc_lopt_linear \
		outer.steps=3000 $(META_RECIPE) ship=$@
# The lean design (update benchmark's small_fc_lopt/lean): no factored features, one momentum
# at 0.9, one hidden layer of 2 units. Like hidden size 1 it starts from seed 2: from seed 0
# it plateaued at loss 0.685 (3,000 outer steps), from seed 1 every update was zero (ln 10).
LEAN := optimizer.use_factored=false optimizer.use_factored_momenta=false \
	'optimizer.momentum_decays=[0.9]' optimizer.hidden_size=2 optimizer.hidden_layers=1
$(CHECKPOINTS)/small_fc_lopt_lean.npz: | setup
	$(PY) -m bench.meta_train optimizer=small_fc_lopt $(LEAN) optimizer.seed=2 \
		name=small_fc_lopt_lean outer.steps=3000 $(META_RECIPE) ship=$@
$(CHECKPOINTS)/mlp_lopt.npz: | setup
	$(PY) -m bench.meta_train optimizer=mlp_lopt outer.steps=3000 $(META_RECIPE) ship=$@

# Family-trained checkpoints (conf/family/image_family.yaml): each starts from its specialist's
# meta-parameters and draws 4 of the family's 10 tasks per outer step, their estimates scaled
# to unit norm before averaging (outer.balance=unit). Their small state is kept
# in results/reference/meta/<name>/, so a long run can be stopped (ARGS=stop_after=N) and
# carried on from a fresh clone by running the recipe again.
FAMILY ?= image_family
FAMILY_EVAL_EVERY ?= 500
FAMILY_RECIPE = family=$(FAMILY) outer.tasks_per_step=4 outer.balance=unit \
	outer.learning_rate=0.001 \
	outer.warmup_steps=100 outer.eval_every=$(FAMILY_EVAL_EVERY) outer.checkpoint_every=100 \
	keep_state_in=results/reference/meta/$(notdir $(basename $@)) ship=$@ $(ARGS)
$(CHECKPOINTS)/small_fc_lopt_family.npz: | setup $(CHECKPOINTS)/small_fc_lopt.npz
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.checkpoint=small_fc_lopt \
		name=small_fc_lopt_family outer.steps=4000 $(FAMILY_RECIPE)
$(CHECKPOINTS)/small_fc_lopt_no_factored_family.npz: | setup \
		$(CHECKPOINTS)/small_fc_lopt_no_factored.npz
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.use_factored=false \
		optimizer.use_factored_momenta=false optimizer.checkpoint=small_fc_lopt_no_factored \
		name=small_fc_lopt_no_factored_family outer.steps=4000 $(FAMILY_RECIPE)
# The same recipe on wider and deeper members (conf/family/image_family_wide.yaml), validated
# every 250 outer steps on four tasks.
WIDE_FAMILY := $(CHECKPOINTS)/small_fc_lopt_wide_family.npz \
	$(CHECKPOINTS)/small_fc_lopt_linear_wide_family.npz \
	$(CHECKPOINTS)/small_fc_lopt_lean_wide_family.npz \
	$(CHECKPOINTS)/small_fc_lopt_lagged_wide_family.npz
$(WIDE_FAMILY): FAMILY = image_family_wide
$(WIDE_FAMILY): FAMILY_EVAL_EVERY = 250
$(CHECKPOINTS)/small_fc_lopt_wide_family.npz: | setup $(CHECKPOINTS)/small_fc_lopt.npz
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.checkpoint=small_fc_lopt \
		name=small_fc_lopt_wide_family outer.steps=2000 $(FAMILY_RECIPE)
$(CHECKPOINTS)/small_fc_lopt_linear_wide_family.npz: | setup \
		$(CHECKPOINTS)/small_fc_lopt_linear.npz
	$(PY) -m bench.meta_train optimizer=small_fc_lopt $(LINEAR) \
		optimizer.checkpoint=small_fc_lopt_linear name=small_fc_lopt_linear_wide_family \
		outer.steps=2000 $(FAMILY_RECIPE)
$(CHECKPOINTS)/small_fc_lopt_lean_wide_family.npz: | setup $(CHECKPOINTS)/small_fc_lopt_lean.npz
	$(PY) -m bench.meta_train optimizer=small_fc_lopt $(LEAN) \
		optimizer.checkpoint=small_fc_lopt_lean name=small_fc_lopt_lean_wide_family \
		outer.steps=2000 $(FAMILY_RECIPE)
# Lagged normalisation (the previous step's feature scales) keeps the exact design's network, so
# it starts from the same specialist as small_fc_lopt_wide_family and runs the same recipe.
$(CHECKPOINTS)/small_fc_lopt_lagged_wide_family.npz: | setup $(CHECKPOINTS)/small_fc_lopt.npz
	$(PY) -m bench.meta_train optimizer=small_fc_lopt optimizer.normalisation=lagged \
		optimizer.checkpoint=small_fc_lopt name=small_fc_lopt_lagged_wide_family \
		outer.steps=2000 $(FAMILY_RECIPE)
$(CHECKPOINTS)/mlp_lopt_family.npz: | setup $(CHECKPOINTS)/mlp_lopt.npz
	$(PY) -m bench.meta_train optimizer=mlp_lopt optimizer.checkpoint=mlp_lopt name=mlp_lopt_family \
		outer.steps=4000 $(FAMILY_RECIPE)

# The tables of measured numbers in docs/*.md, from results/reference/ (CHECK=1: only check).
.PHONY: docs
docs: setup
	$(PY) -m bench.reference_tables $(if $(CHECK),--check)

# One pytest worker per core, each taking whole test files (their module fixtures run once).
test: setup
	$(PY) -m pytest -q -n auto --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .
