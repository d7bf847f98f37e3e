# Two commands for a user: `make demo` and `make test`. Both install what they need first:
# a virtualenv with the project (pip, from pyproject.toml, with pyspark for the sidecar's Spark
# engine), Apache Kafka's jars and the Iceberg runtime jar (Maven).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test unit broker-start broker-stop clean

$(BIN)/cjo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,spark]'
	touch $@

install: $(BIN)/cjo
	$(BIN)/cjo broker install
	$(BIN)/python -m deploy.iceberg

demo: install
	$(BIN)/cjo demo

test: install
	$(BIN)/python -m pytest

unit: $(BIN)/cjo
	$(BIN)/python -m pytest tests/unit

broker-start: install
	$(BIN)/cjo broker start

broker-stop: $(BIN)/cjo
	$(BIN)/cjo broker stop

clean:
	rm -rf $(VENV) *.egg-info test-artifacts
