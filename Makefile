# Fresh machine: `make demo` (installs, then trains on real data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LW := $(VENV)/bin/labelwise
STAMP := $(VENV)/.installed
DEBS := dataset-fashion-mnist chromium
DEMO_DATA := demo_data
DEMO_EPOCHS ?= 5

.PHONY: install system-deps demo test test-portable bench bench-portable bench-quick bench-accuracy report-screenshot clean

install: $(STAMP)

# Debian packages: Fashion-MNIST (real data, no download at run time) and Chromium (browser tests of
# the report and the serving page). Without apt the demo falls back to scikit-learn's bundled digits
# and the browser tests skip, so a failure here is reported but not fatal.
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	    echo "installing Debian packages:$$missing"; \
	    ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing) \
	      || echo "warning: could not install$$missing; the demo will use scikit-learn's digits instead"; \
	  else echo "no apt-get: skipping$$missing (the demo uses scikit-learn's digits)"; fi; \
	fi

$(STAMP): requirements.txt pyproject.toml
	$(MAKE) system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision pins first: on this machine they install from local disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: install
	@test -d $(DEMO_DATA)/multiclass || $(PY) -m labelwise.data.demo $(DEMO_DATA)
	$(LW) inspect $(DEMO_DATA)/multilabel
	$(LW) train $(DEMO_DATA)/multilabel --out runs/demo-multilabel --epochs $(DEMO_EPOCHS) --no-report
	$(LW) evaluate runs/demo-multilabel $(DEMO_DATA)/multilabel_test
	$(LW) predict runs/demo-multilabel $(DEMO_DATA)/multilabel_test/images --out runs/demo-multilabel/test_predictions.csv
	$(LW) report runs/demo-multilabel
	$(LW) train $(DEMO_DATA)/multiclass --out runs/demo-multiclass --epochs $(DEMO_EPOCHS) --no-report
	$(LW) evaluate runs/demo-multiclass $(DEMO_DATA)/multiclass_test
	$(LW) predict runs/demo-multiclass $(DEMO_DATA)/multiclass_test --out runs/demo-multiclass/test_predictions.csv
	$(LW) report runs/demo-multiclass
	@echo; echo "Results:"; for r in runs/demo-multilabel runs/demo-multiclass; do \
	  echo "  $$r/report.html   <- open in a browser: scores, curves, galleries, suspected label errors"; \
	  echo "  $$r/  metrics.json (validation), evaluation.json (held-out test), test_predictions.csv, history.csv"; done

test: install
	$(PY) -m pytest --durations=10

# The real-data (slow) tests under another CPU's numerics: oneDNN held to AVX2 and no CPU bf16, so what
# passes on an AMX machine is known to pass on one without (issue 16). Not part of `make test`.
test-portable: install
	ONEDNN_MAX_CPU_ISA=AVX2 LABELWISE_CPU_BF16=0 $(PY) -m pytest -m slow --durations=10

# Benchmarks print figures and never fail on time. `make bench` prints the speed table (photos vs a
# naive loader, Fashion-MNIST throughput / memory / time-to-accuracy, ONNX vs PyTorch, predict vs the
# model alone), each figure beside its reference, with the CPU's vector features: ~35 min.
# `make bench-portable`: the same without AMX / CPU bf16 (issue 17's targets count there);
# `make bench-quick` (or LABELWISE_BENCH_QUICK=1): a smoke run of every section in a few minutes.
bench: install
	$(PY) bench/speed.py

bench-portable: install
	ONEDNN_MAX_CPU_ISA=AVX512_CORE LABELWISE_CPU_BF16=0 $(PY) bench/speed.py

bench-quick: install
	$(PY) bench/speed.py --quick

# Accuracy-side benchmarks: imbalance handling and training recipes.
bench-accuracy: install
	$(PY) bench/imbalance.py
	$(PY) bench/recipes.py

# Renders a small real run's report in headless Chromium and prints the screenshot's path.
report-screenshot: install
	$(PY) tests/report_screenshot.py

clean:
	rm -rf runs $(DEMO_DATA) .pytest_cache
