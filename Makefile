# The two commands of the README: `make demo` and `make test`.
# Each creates .venv (python3 -m venv) and installs slapfed into it.
# Debian's /usr/bin/python3 when present: a node running as root gives each partition
# its own unix user, and those users must be able to execute the runtime (an
# interpreter under root's home is not).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-stop test bench clean answer-schemas

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/slapfed demo start --dir demo

demo-stop: $(STAMP)
	$(BIN)/slapfed demo stop --dir demo

test:
	VENV=$(VENV) .ci/test

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo build dist *.egg-info

# slapfed/core/answer_schemas.py: the answer models as data (the client checks answers
# with it, without importing pydantic); tests/test_answer_check.py keeps it up to date
answer-schemas: $(STAMP)
	$(BIN)/python -c 'from slapfed.core.answers import compiled_source; text = compiled_source(); \
	open("slapfed/core/answer_schemas.py", "w").write(text)'
