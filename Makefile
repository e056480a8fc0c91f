# Two entry points for a fresh machine: `make demo` runs the main job, `make test` runs every test.
# Both create .venv and install what they need (torch==2.13.0 first: the CPU build).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.blipviz-installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test test-avx2 test-figures-long test-trained docs notebooks-real lint clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m blipviz

# Debian's Chromium for tests/test_widgets_browser.py (Playwright drives it; no browser download):
# installed with apt-get when missing and running as root, else the browser test is skipped.
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "note: $(CHROMIUM) is missing (apt-get install chromium as root): browser test skipped"; \
	fi

# The suite: lint and types (mypy, settings in pyproject.toml); every notebook run once with nbmake, in the docs' source folder so that the site
# shows those runs' outputs (docs/build.py); the site built with warnings as errors; the tests, the
# doctests and the site's checks (tests/test_docs_site.py); then the AVX2 pass.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 BLIPVIZ_MODEL=tiny-random BLIPVIZ_HYPOTHESIS=ci

test: $(STAMP) browser
	$(VENV)/bin/ruff check blipviz tests benchmarks docs
	$(VENV)/bin/ruff format --check blipviz tests benchmarks docs
	$(VENV)/bin/mypy blipviz
	$(PY) docs/build.py assemble execute html
	$(TEST_ENV) BLIPVIZ_DOCS_SITE=docs/_build/html BLIPVIZ_REQUIRE_DOCS=1 \
		$(PY) -m pytest tests blipviz --doctest-modules -p no:cacheprovider --durations=20
	$(MAKE) --no-print-directory test-avx2

# Acceptance tests on the trained Salesforce/blip-itm-base-coco (tests/test_trained.py): online, or
# with the checkpoint and BLIP's demo image in the local caches; each skips saying why otherwise.
test-trained: $(STAMP)
	$(PY) -m pytest tests/test_trained.py -p no:cacheprovider -rs

# The documentation site, offline, into docs/_build/html (notebooks executed on the tiny net).
docs: $(STAMP)
	$(PY) docs/build.py all

# The generated-scene figure tests with new random scenes, 25 times as many as `make test` draws
# (which draws the same few on every run): about 25 minutes on 2 cores. A failure prints the
# scene and a @reproduce_failure blob.
FIGURE_RULE_TESTS := tests/test_figure_rules.py tests/test_feature_space_figure_rules.py

test-figures-long: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 BLIPVIZ_MODEL=tiny-random BLIPVIZ_HYPOTHESIS=explore \
		BLIPVIZ_EXAMPLE_SCALE=$${BLIPVIZ_EXAMPLE_SCALE:-25} \
		$(PY) -m pytest $(FIGURE_RULE_TESTS) -p no:cacheprovider --durations=10

# The numerical tests and the image tests again on another CPU's kernels (AVX2 only, as on older Intel
# and AMD CPUs): tolerances must hold wherever the suite runs (blipviz.testing.assert_close), and the
# figures must match their baselines (they draw fixed inputs: blipviz.testing.figures).
NUMERICAL_TESTS := tests/test_numerics.py tests/test_parity.py tests/test_fast_attention.py \
	tests/test_reliability.py tests/test_scores.py
# every file with an image test; `-m mpl_image_compare` runs those tests only
IMAGE_TESTS = $(shell grep -lE 'image_comparison|mpl_image_compare' tests/test_*.py)
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 BLIPVIZ_HYPOTHESIS=ci \
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 BLIPVIZ_MODEL=tiny-random

test-avx2: $(STAMP)
	$(AVX2) $(PY) -m pytest $(NUMERICAL_TESTS) -p no:cacheprovider --durations=10
	$(AVX2) $(PY) -m pytest $(IMAGE_TESTS) -m mpl_image_compare -p no:cacheprovider

# Every notebook on the real default net's geometry (ViT-B/16, random weights: the arithmetic of
# Salesforce/blip-itm-base-coco, offline), each killed after 8 minutes; prints each notebook's time
# and the total (benchmarks/notebooks_real.py). The converted checkpoint is written once to
# REAL_CHECKPOINT. Not part of `make test`: minutes per notebook on a laptop's CPU.
REAL_CHECKPOINT ?= $(HOME)/.cache/blipviz/vit-b16-random

notebooks-real: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
		$(PY) benchmarks/notebooks_real.py --checkpoint $(REAL_CHECKPOINT) --timeout 480

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix blipviz tests benchmarks docs
	$(VENV)/bin/ruff format blipviz tests benchmarks docs

clean:
	rm -rf $(VENV) .pytest_cache docs/_build docs/_source
