# Two commands for a fresh Debian machine with Python 3.11:
#   make demo   set up .venv (and Mesa's EGL when missing), then run the main job
#   make test   same set-up, then lint (ruff), the type check (mypy) and the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

DOMAIN ?= walker
TASK   ?= stand
OUT    ?= runs/demo

.PHONY: setup test test-fast lint demo bench clean system-deps

setup: system-deps $(STAMP)

# Headless rendering needs Mesa's EGL; installed only when missing (needs root or sudo).
system-deps:
	@if ! dpkg -s libegl1 libgl1-mesa-dri >/dev/null 2>&1; then \
		echo "Installing Debian packages libegl1 libgl1-mesa-dri (headless MuJoCo rendering)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libegl1 libgl1-mesa-dri; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision pinned to the tested releases; the rest from pyproject.toml
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

# mypy reads its settings (files, per-module options) from [tool.mypy] in pyproject.toml
test: setup
	$(PY) -m ruff check genrl_gym tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m ruff check genrl_gym tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

lint: setup
	$(PY) -m ruff check genrl_gym tests benchmarks examples
	$(PY) -m mypy

demo: setup
	$(VENV)/bin/genrl demo --domain $(DOMAIN) --task $(TASK) --out $(OUT)

# The quick speed benchmarks; the long ones: `$(PY) -m benchmarks compare --args="..."` (see benchmarks/).
# Benchmarks are part of the repository, not of the installed `genrl` command.
bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
