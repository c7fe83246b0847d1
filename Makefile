# Branchline: `make run` starts the box, `make test` runs the whole suite.
# Both create .venv and install what they need; `make test` also installs the
# Debian packages the real-peer tests use (sipp, chromium, nats-server).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEB_TEST_PKGS := sip-tester chromium nats-server sox baresip linphone-cli

.PHONY: run test venv deps-test deb-test bench clean

$(VENV)/.stamp-base: pyproject.toml scripts/requirements.py
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { \
	  echo "installing python3-venv"; SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) scripts/requirements.py base > $(VENV)/requirements-base.txt
	$(PY) -m pip install -q -r $(VENV)/requirements-base.txt
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base
	$(PY) scripts/requirements.py test > $(VENV)/requirements-test.txt
	$(PY) -m pip install -q -r $(VENV)/requirements-test.txt
	touch $@

venv: $(VENV)/.stamp-base

deb-test:
	@missing=""; for p in $(DEB_TEST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(VENV)/.stamp-base
	$(PY) run.py $(ARGS)

test: deb-test $(VENV)/.stamp-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.stamp-test
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache
