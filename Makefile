# Two set-up commands (README): `make plan` renders the broadcast stack and prints its summary;
# `make test` runs the whole suite. Each creates the virtualenv it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: plan test tools crds loadtool clean

# The rehearsal's load tool (peaknight/builders/loadreplay.py), which the calibrate tests run for
# real against a fake model server: inference-perf needs Python 3.12 or later, so it gets its own
# virtualenv, pinned exactly (constraints-loadtool.txt); PY312=/path/to/python3.12 picks the
# interpreter, else .ci/python312 finds one. 7m49s here on a busy 2-core machine (1m49s of CPU).
LOADTOOL_VENV ?= .venv-loadtool
PY312 ?=
LOADTOOL := $(LOADTOOL_VENV)/.installed
INFERENCE_PERF := inference-perf==0.7.0

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

$(LOADTOOL): constraints-loadtool.txt
	py="$(PY312)"; [ -n "$$py" ] || py=$$(.ci/python312) || exit 1; "$$py" -m venv $(LOADTOOL_VENV)
	$(LOADTOOL_VENV)/bin/python -m pip install -q -c constraints-loadtool.txt $(INFERENCE_PERF)
	touch $(LOADTOOL)

loadtool: $(LOADTOOL)

plan: $(STAMP)
	$(VENV)/bin/peaknight render broadcast --out build/broadcast

tools:
	.ci/install-tools

# The pinned upstream CRDs (peaknight/review/crds.lock.yaml), verified: downloaded into .cache/crds/,
# or read from a local mirror with PEAKNIGHT_CRDS=DIR. Without either it stops with one line.
crds: $(STAMP)
	$(VENV)/bin/peaknight crds fetch

test: $(STAMP) tools crds $(LOADTOOL)
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) $(LOADTOOL_VENV) build .cache
