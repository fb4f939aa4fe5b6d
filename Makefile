# Two entry points for a fresh machine: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints/local-torch.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.dgss-installed

.PHONY: install demo test test-fast bench bench-full clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=$(CONSTRAINTS) $(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/dgss demo

# The whole suite, then the learning and ISA-dependent tests once more as an AVX2 host runs them (only
# where this host has AVX-512: on an AVX2 host the first pass already is that view).
AVX2_EMULATION := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
# Two pytest-xdist workers with one torch thread each (tests/conftest.py): the 2 cores stay busy without
# OpenMP threads competing; the 25 slowest tests are listed at the end.
PYTEST_PARALLEL := -n 2 --dist worksteal
test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) --durations=25
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
		echo "AVX-512 host: the learning and ISA tests again under AVX2 emulation ($(AVX2_EMULATION))"; \
		HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(AVX2_EMULATION) $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) -m "learning or isa"; \
	else echo "no AVX-512 on this host: the run above already is the AVX2 view"; fi

# The quick local loop: everything but the heaviest end-to-end runs and the learning tests (a few minutes).
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not e2e and not learning"

# The scripts that print the tables of docs/performance.md. `make bench`: a quick pass (a few minutes on
# 2 cores: default-setting memory estimates, FLOP projection, the main inference rows, agreement on random
# weights); `make bench-full`: every row (about an hour here), agreement on the `dgss demo` checkpoint.
BENCH_DEMO ?= bench_demo
bench: $(STAMP)
	$(BIN)/python benchmarks/train_memory_estimate.py --methods depthforge,vireo
	$(BIN)/python benchmarks/flop_projection.py --methods depthforge
	$(BIN)/python benchmarks/inference_throughput.py --quick

bench-full: $(STAMP)
	test -f $(BENCH_DEMO)/run/iter_000600.safetensors || HF_HUB_OFFLINE=1 $(BIN)/dgss demo --out $(BENCH_DEMO)
	$(BIN)/python benchmarks/forward_cpu.py --repeats 2
	$(BIN)/python benchmarks/cmpe_chunking.py --chunks none,64,16
	$(BIN)/python benchmarks/train_memory_estimate.py --all --check
	$(BIN)/python benchmarks/flop_projection.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/inference_throughput.py --trained $(BENCH_DEMO)/run/iter_000600.safetensors
	$(BIN)/python benchmarks/data_loading.py

clean:
	rm -rf $(VENV) demo_out $(BENCH_DEMO)
