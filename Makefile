# Two entry points: `make run` (serve on 127.0.0.1:8000) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: run dist docs docs-screenshot test lint format dev bench-imaging bench-serving bench-serving-gpu bench-jobs train-digits train-digits-detect train-digits-segment clean

$(VENV)/.runtime: requirements.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime  # gunicorn with the packaged configuration (ai_service/server/gunicorn_config.py)
	$(VENV)/bin/ai-service serve

dist: $(VENV)/.dev docs  # sdist + wheel in dist/, the manual inside (python -m build; writes only dist/, site/)
	$(PY) -m build --outdir dist .

docs: $(VENV)/.dev  # the manual into site/, strict: a warning (broken link or anchor) fails; served at /guide
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-screenshot: $(VENV)/.dev  # docs/assets/upload-page.png with Chromium, for the README and the Web UI page
	$(PY) docs/hooks/screenshot.py

dev: $(VENV)/.runtime
	$(PY) app.py

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev  # ruff.toml: one line length for both
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-imaging: $(VENV)/.dev
	$(PY) bench/imaging.py

bench-serving: $(VENV)/.dev  # ~14 min on 2 cores; writes bench/results/serving.md
	$(PY) bench/serving.py

bench-serving-gpu: $(VENV)/.dev  # needs CUDA (~7 min on an H200); writes bench/results/serving-gpu.md
	$(PY) bench/serving_gpu.py

bench-jobs: $(VENV)/.dev  # needs Redis on 127.0.0.1:6379 for the Celery part; writes bench/results/jobs.md
	$(PY) bench/jobs.py

train-digits: $(VENV)/.runtime
	$(VENV)/bin/ai-service train-digits

train-digits-detect train-digits-segment: $(VENV)/.dev  # scikit-image's photos are behind the composed scenes
	$(VENV)/bin/ai-service $@

clean:
	rm -rf $(VENV) .pytest_cache build dist site *.egg-info
