# Two set-up commands (README): `make plan` renders the broadcast stack and prints its summary;
# `make test` runs the whole suite. Each creates the virtualenv it needs.
#
# `make test` in stages, each announced with a banner: the Debian tools, the two virtualenvs (built
# side by side), mypy, the fast tier (plain `pytest`: unit, contract and Pulumi-mock tests), then
# the real-tool tier (`pytest -m realtool`: nginx end to end, promtool over whole nights,
# inference-perf, the wheel, the full fuzz set). bench/tests measures the tiers.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: plan test setup tools crds loadtool clean

# The rehearsal's load tool (peaknight/builders/loadreplay.py), which the calibrate tests run for
# real against a fake model server: inference-perf needs Python 3.12 or later, so it gets its own
# virtualenv, pinned exactly (constraints-loadtool.txt); PY312=/path/to/python3.12 picks the
# interpreter, else .ci/python312 finds one. 7m49s here on a busy 2-core machine (1m49s of CPU).
LOADTOOL_VENV ?= .venv-loadtool
PY312 ?=
LOADTOOL := $(LOADTOOL_VENV)/.installed
INFERENCE_PERF := inference-perf==0.7.0

# Test workers per tier (pytest-xdist): the 2 cores of this project's machines.
JOBS ?= 2
banner = @printf '\n==== %s ====\n' "$(1)"

$(STAMP): pyproject.toml constraints.txt
	$(call banner,virtualenv $(VENV) (Python 3.11: the kit and its test tools))
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

$(LOADTOOL): constraints-loadtool.txt
	$(call banner,virtualenv $(LOADTOOL_VENV) (Python 3.12: $(INFERENCE_PERF)))
	py="$(PY312)"; [ -n "$$py" ] || py=$$(.ci/python312) || exit 1; "$$py" -m venv $(LOADTOOL_VENV)
	$(LOADTOOL_VENV)/bin/python -m pip install -q -c constraints-loadtool.txt $(INFERENCE_PERF)
	touch $(LOADTOOL)

loadtool: $(LOADTOOL)

plan: $(STAMP)
	$(VENV)/bin/peaknight render broadcast --out build/broadcast

tools:
	$(call banner,Debian tools (.ci/apt-packages.txt))
	.ci/install-tools

# The pinned upstream CRDs (peaknight/review/crds.lock.yaml), verified: downloaded into .cache/crds/,
# or read from a local mirror with PEAKNIGHT_CRDS=DIR. Without either it stops with one line.
crds: $(STAMP)
	$(call banner,pinned CRDs)
	$(VENV)/bin/peaknight crds fetch

# The set-up stages run side by side (the virtualenvs download while apt-get installs); the
# checks run one after another, each reporting per test file.
setup:
	$(MAKE) -j3 --no-print-directory tools $(STAMP) $(LOADTOOL)
	$(MAKE) --no-print-directory crds

test: setup
	$(call banner,mypy)
	$(VENV)/bin/mypy
	$(call banner,fast tier: pytest)
	$(VENV)/bin/pytest -n $(JOBS) --dist loadfile
	$(call banner,real-tool tier: pytest -m realtool)
	$(VENV)/bin/pytest -n $(JOBS) --dist loadfile -m realtool

clean:
	rm -rf $(VENV) $(LOADTOOL_VENV) build .cache
