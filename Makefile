# Two set-up commands (README): `make plan` renders the broadcast stack and prints its summary;
# `make test` runs the whole suite. Each creates the virtualenv it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: plan test tools crds clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

plan: $(STAMP)
	$(VENV)/bin/peaknight render broadcast --out build/broadcast

tools:
	.ci/install-tools

# The pinned upstream CRDs (peaknight/review/crds.lock.yaml), verified: downloaded into .cache/crds/,
# or read from a local mirror with PEAKNIGHT_CRDS=DIR. Without either it stops with one line.
crds: $(STAMP)
	$(VENV)/bin/peaknight crds fetch

test: $(STAMP) tools crds
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) build .cache
