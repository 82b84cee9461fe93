# Two entry points for a fresh machine: `make demo` and `make test` (see README).
# TORCH is installed first so the pinned build satisfies the package's torch range;
# GPU users override it, e.g. make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test bench gpu-check install clean browser mosquitto

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/weldfusion demo --out demo_out

test: $(BIN)/.installed browser mosquitto
	$(BIN)/python -m pytest -q

# Headless Chromium renders the HTML report in one test; installed from Debian when possible,
# otherwise that test is skipped with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null 2>&1 \
	  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) \
	  || echo "note: chromium could not be installed here; the report rendering test will be skipped"

# A Mosquitto MQTT broker for the monitor's end-to-end MQTT test; installed from Debian when possible,
# otherwise that test is skipped with its reason.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || apt-get install -y -qq mosquitto >/dev/null 2>&1 \
	  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq mosquitto >/dev/null 2>&1) \
	  || echo "note: mosquitto could not be installed here; the monitor's MQTT test will be skipped"

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run_all.py

# The full-size encoders end to end on one CUDA GPU (see README, "GPU check"); without one it says so.
gpu-check: $(BIN)/.installed
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) demo_out .bench
