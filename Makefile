# The two commands of the README: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := dataset-fashion-mnist wordnet-base

.PHONY: quickstart test test-fast install system-deps bench clean

quickstart: install
	$(BIN)/xspec run specs/quickstart.toml

test: install
	$(BIN)/python -m pytest

# Everything but the end-to-end training and SLURM tests (marked `slow`).
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# Debian data packages the quickstart and the tests read offline.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf xspec-work
