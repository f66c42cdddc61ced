# recarch: `make test` sets up .venv and runs the tests; `make demo` runs the main job end to end.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export RECARCH_DATA ?= $(SHARED_DATA)
endif
export OMP_NUM_THREADS ?= 2

.PHONY: venv test demo bench-seq bench-ingest bench-render clean

venv: $(VENV)/.installed

# torch==2.13.0 is the CPU wheel already on this kind of machine; naming it first keeps pip from
# resolving `torch` to a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/recarch search --config configs/easrec-quick.yaml --out-dir runs/demo

bench-seq: venv
	$(PY) benchmarks/bench_seq.py
	$(PY) benchmarks/render.py

bench-ingest: venv
	$(PY) benchmarks/bench_ctr_ingest.py
	$(PY) benchmarks/render.py

bench-render: venv
	$(PY) benchmarks/render.py

clean:
	rm -rf $(VENV) runs .pytest_cache
