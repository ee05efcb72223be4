# Set-up and everyday commands. Everything installs into ./.venv from this project's own files.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint format demo stop clean

$(STAMP): pyproject.toml requirements-extra.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[pipeline,flows,dev]'
	$(BIN)/pip install -q --no-deps -r requirements-extra.txt
	# Byte-compile the project once here, as an install does (the editable install does not):
	# otherwise every first process of a fresh clone (test workers, CLI runs) compiles it.
	$(BIN)/python -m compileall -q -j 0 segrefiner pipelines flows services
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The main job: demo data + checkpoint, the Prefect and MLflow servers and the deployment runner
# on 127.0.0.1 (started or reused), then `prefect deployment run refine-coco/demo --watch`.
demo: $(STAMP)
	$(BIN)/python -m flows.demo

# Stops what `make demo` started: the runner first, then the servers.
stop:
	@if test -x $(BIN)/python; then $(BIN)/python -m services down; fi

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
