# ocibuild: the two commands a user needs are `make demo` and `make test`.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: deps test test-root test-rootless lint bench demo clean

deps:
	bash tests/install-deps.sh

test: deps lint test-root test-rootless

test-root:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS) tests

# The rootless path is the product's main path: run the sandbox and build tests again as an
# unprivileged user (with and without /etc/subuid ranges), see tests/run-rootless.sh.
test-rootless:
	bash tests/run-rootless.sh

lint:
	$(PYTHON) -m ruff check ocibuild tests bench

bench: deps
	$(PYTHON) -m bench

demo: deps
	$(PYTHON) -m ocibuild.demo

clean:
	rm -rf build dist *.egg-info .pytest_cache
