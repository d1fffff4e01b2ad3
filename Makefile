# Every target installs what it needs by itself: on a fresh machine `make demo` and `make test` just work.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench-wheel clean redis-server

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# The engine's main job on its embedded default: the engine plus a simulated shop on a scaled clock.
demo: $(STAMP)
	$(VENV)/bin/cartwheel demo

test: $(STAMP) redis-server
	$(PY) -m pytest -q

bench-wheel: $(STAMP)
	$(VENV)/bin/cartwheel bench wheel

clean:
	rm -rf $(VENV) run state outbox bench/out
