# Two commands on a fresh clone (Python 3.11): `make demo` and `make test`.
# Each creates .venv and installs what it needs the first time.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGINS := plugins/xvalidate-torch plugins/xvalidate-tflite
PLUGIN_TESTS := $(addsuffix /tests,$(PLUGINS))

.PHONY: demo test test-all bench coverage mutation fuzz faults self-compare clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[frameworks,test,ray]"  # ray: the sweep's Ray executor is tested too
	$(BIN)/python -m pip install --quiet -e ./plugins/xvalidate-tflite
	@# torch 2.13 needs typing-extensions >= 4.10 where tensorflow-cpu 2.12 declares < 4.6: no single resolution
	@# holds both, so the torch plugin (torch pinned in its pyproject) is a step of its own; pip warns about the
	@# declared range, and TensorFlow works with the newer typing-extensions (the whole suite runs on it)
	$(BIN)/python -m pip install --quiet -e ./plugins/xvalidate-torch
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xvalidate demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests $(PLUGIN_TESTS)

test-all: $(STAMP)  # the slow tests one at a time: several big models at once do not fit in memory
	$(BIN)/python -m pytest -n 2 -q tests $(PLUGIN_TESTS)
	$(BIN)/python -m pytest -q -m slow tests $(PLUGIN_TESTS)

fuzz: $(STAMP)  # the long fuzzing round: mutated model files into every loader, random graphs into alignment
	XVALIDATE_FUZZ_EXAMPLES=$${XVALIDATE_FUZZ_EXAMPLES:-300} XVALIDATE_FUZZ_REPORT=$${XVALIDATE_FUZZ_REPORT:-/tmp/xvalidate-fuzz-report.json} \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[frameworks,test,bench]"
	$(BIN)/python benchmarks/run.py

coverage: $(STAMP)  # slow (about an hour): a sweep (xvalidate.sweep, one cell at a time, resumable) into docs/coverage.md and docs/coverage.json
	XVALIDATE_WORKER_TIMEOUT=900 $(BIN)/python benchmarks/coverage.py

faults: $(STAMP)  # slow (about 25 minutes): planted faults in 9 models and the seed-2 ports, into docs/faults.md
	$(BIN)/python benchmarks/faults.py

self-compare: $(STAMP)  # slow (about 20 minutes): every zoo model against itself must PASS, into docs/self-compare.md
	$(BIN)/python benchmarks/self_compare.py

mutation: $(STAMP)  # not part of CI: mutmut over core, cache, worker, report, cli with the fast tests (docs/testing.md)
	$(BIN)/python -m pip install --quiet -e ".[frameworks,test,mutation]"
	$(BIN)/python tools/mutation.py

clean:
	rm -rf $(VENV) build *.egg-info
