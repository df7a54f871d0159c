# Two entry points for people: `make demo` and `make test`. Both build their own .venv first,
# from requirements.lock: exact versions with hashes, so every machine gets what CI tested.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock

.PHONY: demo test lint typecheck layers unit kube-apiserver sshd bench mutation lock clean

# The package itself is installed editable, without build isolation: its build backend comes from the lock too.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock after changing dependencies in pyproject.toml (versions already locked are kept
# where they still fit; `make lock UPGRADE=1` moves everything to the newest allowed). Python 3.11,
# every platform (Linux x86_64 and aarch64 included), hashes for every file. deploy/requirements.lock is the
# daemon image's subset (no extras), at the same versions.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml deploy/requirements.in --universal --python-version 3.11 --generate-hashes \
		--constraint $(LOCK) --custom-compile-command "make lock" --quiet -o deploy/requirements.lock

demo: $(STAMP)
	$(BIN)/python -m reconciler.demo

test: $(STAMP) lint typecheck layers unit

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# The Kubernetes tests (tests/kube) group onto one xdist worker: one API server for all of them.
unit: $(STAMP) kube-apiserver sshd
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# A real kube-apiserver for tests/kube, built once from Debian's source package into a cache outside
# the repo (~/.cache/reconciler/kube; 3.5-6 minutes on 2 cores, then reused). Where the build is
# impossible (no apt, no network: exit 3) the tests skip and say why, except under CI, where they fail.
kube-apiserver:
	@bash tests/support/build_kube_apiserver.sh >/dev/null || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

# Debian's openssh-server for the SSH deploy-key tests (tests/sources/test_git_ssh.py, tests/e2e_daemon/test_daemon_ssh.py):
# they start their own sshd on 127.0.0.1 with their own host key, never the system's service. Where the install is
# impossible (no apt, not root: exit 3) they skip and say why, except under CI, where they fail.
sshd:
	@bash tests/support/install_sshd.sh >/dev/null || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

# Mutation testing of validate/, translate/ and xds/ against their fast tests ([tool.mutmut] in pyproject.toml).
# The whole run takes hours on 2 shared cores; MUTANTS narrows it with mutmut's name patterns, e.g. a ~10%
# sample with every function represented: make mutation MUTANTS='*__mutmut_*1'
MUTANTS ?=
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	set -f; $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(BIN)/mutmut results --all true | $(BIN)/python tests/support/mutation_summary.py

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
