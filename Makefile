# Two commands on a fresh machine (Python 3.11 and pip, nothing else running):
#   make demo   install, build demo data and tiny models, run an experiment, serve the site
#   make test   install and run the whole test suite
#   make worker start the workers for this machine (one per GPU, or one on a CPU-only machine)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test worker bench clean-var

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "evalsite needs Python 3.11 (torch wheels here are for 3.11); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) manage.py demo

test: install
	$(PY) -m pytest

worker: install
	$(PY) manage.py worker

bench: install
	$(PY) bench/overhead.py
	$(PY) bench/generator_speed.py
	$(PY) bench/dreampaint_fine_tune.py
	$(PY) bench/metrics.py
	$(PY) bench/study_load.py

clean-var:
	rm -rf var
