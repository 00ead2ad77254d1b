# Two commands do everything on a fresh machine:
#   make lab    set up .venv and open JupyterLab on the notebooks
#   make test   set up .venv and run the unit tests, every notebook (nbval) and the browser tests

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ehrexplain-installed

# python3.12 may be a pyenv shim that fails; try it, then known install places.
PYTHON312 := $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

.PHONY: lab test unit notebooks browser bench memory setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON312)" ]; then \
		echo "error: Python 3.12 is required (PyHealth 2.1 needs >=3.12) but no working python3.12 was found." >&2; \
		echo "       Install it (e.g. 'pyenv install 3.12' or your OS package) and run make again." >&2; \
		exit 1; fi
	@[ -x $(PY) ] || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00_quickstart.ipynb

test: unit notebooks browser

unit: $(STAMP)
	$(PY) -m pytest -q --doctest-modules ehrexplain tests --ignore=tests/browser

# JupyterLab and exported pages in the system Chromium (Playwright drives it; no downloaded browser).
CHROMIUM := $(or $(EHREXPLAIN_CHROMIUM),$(shell command -v chromium 2>/dev/null),$(wildcard /usr/bin/chromium))

browser: $(STAMP)
	@if [ -n "$(CHROMIUM)" ]; then \
		EHREXPLAIN_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -m browser tests/browser; \
	else \
		echo "SKIPPED: browser tests (JupyterLab and exported pages in Chromium): no chromium found."; \
		echo "         Enable them: sudo apt-get install chromium (or set EHREXPLAIN_CHROMIUM=/path/to/chromium), then make browser."; \
	fi

notebooks: $(STAMP)
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		$(PY) -m pytest -q --nbval-lax --nbval-current-env \
			--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks/; \
	else echo "no notebooks yet"; fi

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'  # Captum, the IG-tolerance reference
	$(PY) bench/bench_interpreters.py
	$(PY) bench/bench_model_paths.py  # embedding-layer hook vs forward_from_embedding; a GRU RNN explained exactly
	$(PY) bench/bench_ig_tolerance.py
	$(PY) bench/bench_cohort.py
	$(PY) bench/bench_cohort.py --data eicu --patients 48 --batch-size 16  # real records: per patient and per code
	$(PY) bench/bench_ig_memory.py
	$(PY) bench/bench_memory.py  # DeepLIFT, IG and compare on the 32 longest eICU records: each under 1 GiB

memory: $(STAMP)
	$(PY) scripts/notebook_memory.py notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache
