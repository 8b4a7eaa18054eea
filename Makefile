# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench fuzz services clean

$(STAMP): pyproject.toml setup.py guard/backup/walk/_statpage.c guard/backup/repo/_chunker.c guard/fs/_pathsets.c guard/backup/walk/sha256.h
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "cannot create a virtual environment: install python3-venv"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# Prisma's real CLI judges the tests (tests/prisma_cli.py). Installed from the lock
# file with no install scripts (they only download native engines); without npm one line says what
# to do and the Prisma-judged tests fail with the same message.
PRISMA_CLI := tests/prisma
PRISMA_STAMP := $(PRISMA_CLI)/node_modules/.installed

$(PRISMA_STAMP): $(PRISMA_CLI)/package.json $(PRISMA_CLI)/package-lock.json
	@if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then \
		cd $(PRISMA_CLI) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: install Node.js >= 18.18 and npm (apt-get install nodejs npm), then run make test again; the Prisma-judged tests fail until then"; fi

# promtool (Debian's prometheus package) checks deploy/prometheus/alerts.yml and runs its unit tests
# (tests/unit/test_deploy_monitoring.py). Installed with apt-get when run as root; otherwise one line says
# what to do and those tests fail with the same line.
PROMTOOL_STAMP := $(VENV)/.promtool
PROMTOOL_MISSING := promtool not found: install Debian's prometheus package (apt-get install prometheus), then run make test again; the alert rule tests fail until then

$(PROMTOOL_STAMP): $(STAMP)
	@if command -v promtool >/dev/null 2>&1; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; }; } && command -v promtool >/dev/null 2>&1; then touch $@; \
	else echo "$(PROMTOOL_MISSING)"; fi
# The off-site tests drive the real rclone and start OpenSSH's sftp server on 127.0.0.1 (Debian's
# packages). Installed with apt-get when root can; otherwise one line says what to do, and the
# off-site tests fail with the same message.
OFFSITE_STAMP := $(VENV)/.offsite-tools

$(OFFSITE_STAMP):
	@if command -v rclone >/dev/null 2>&1 && test -x /usr/sbin/sshd; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { apt-get install -y -q rclone openssh-server >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q rclone openssh-server >/dev/null 2>&1; }; }; then touch $@; \
	else echo "rclone or sshd not found: apt-get install rclone openssh-server (as root), then run make test again; the off-site tests fail until then"; fi

# The browser tests (tests/acceptance/test_serve_browser.py) drive Debian's chromium with Playwright
# (executable_path; Playwright never downloads a browser). Installed with apt-get when root; otherwise
# one line says what to do and the browser tests fail with the same message.
CHROMIUM_STAMP := $(VENV)/.chromium

$(CHROMIUM_STAMP): | $(STAMP)
	@if command -v chromium >/dev/null 2>&1; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium && touch $@; } \
		|| echo "apt-get could not install chromium: run apt-get update, then make test again; the browser tests fail until then"; \
	else echo "chromium not found: install Debian's chromium package (apt-get install chromium), then run make test again; the browser tests fail until then"; fi

test: $(CHROMIUM_STAMP)

services:
	@scripts/services.sh

run: $(STAMP) services
	@scripts/run-demo.sh

# Two pytest workers (pytest-xdist; a file stays on one worker), then the few tests that look at the
# whole server's databases on their own. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: lint $(PRISMA_STAMP) $(PROMTOOL_STAMP) $(OFFSITE_STAMP) services
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial

# ruff: every Python file git does not ignore; mypy (strict): guard, workers, watchers (pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check -q .
	$(BIN)/mypy

# Each benchmark takes the machine lock so two never share the cores; results go in bench/RESULTS.md.
bench: $(STAMP) services
	@mkdir -p bench/work
	flock bench/work/.machine.lock $(BIN)/python -m bench.files_integrity --reuse
	flock bench/work/.machine.lock $(BIN)/python -m bench.drift
	flock bench/work/.machine.lock $(BIN)/python -m bench.backup --ads 500000 --reuse
	flock bench/work/.machine.lock $(BIN)/python -m bench.sync
	flock bench/work/.machine.lock $(BIN)/python -m bench.restore_seen
	flock bench/work/.machine.lock $(BIN)/python -m bench.repair_slugs --ads 500000 --reuse
	flock bench/work/.machine.lock $(BIN)/python -m bench.drift_repair --ads 500000 --reuse
	flock bench/work/.machine.lock $(BIN)/python -m bench.constraints_rollout --ads 500000 --reuse
	flock bench/work/.machine.lock $(BIN)/python -m bench.offsite --ads 20000 --runs 3 --reuse
	flock bench/work/.machine.lock $(BIN)/python -m bench.metrics_scrape --ads 500000 --reuse

# Hypothesis against the readers of hostile input (paths, DATABASE_URL, settings, manifest, pack
# index), FUZZ_SECONDS each; not part of `make test`. Findings go in bench/RESULTS.md and tests/unit.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	@mkdir -p bench/work
	flock bench/work/.machine.lock $(BIN)/python -m bench.fuzz --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) var bench/work $(PRISMA_CLI)/node_modules
