# Clarion: `make serve` runs everything embedded; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test chaos lint bench screenshots install clean messages

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Clarion needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/python manage.py serve

# In TEST_WORKERS parallel processes (pytest-xdist; each has its own test database and Redis
# database); TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The long fault-injection runs (PostgreSQL: set DATABASE_URL), deselected from `make test`.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

# Every benchmark (PostgreSQL + Redis: set DATABASE_URL and REDIS_URL; wrk from Debian), under
# 10 minutes on 2 cores; writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The admin guide's pictures: the scripted day in chromium (tests/notifications/
# test_admin_day_browser.py) writes each page it passes through to docs/img/admin/ (optimised PNGs).
screenshots: $(STAMP)
	rm -f docs/img/admin/*.png
	CLARION_SCREENSHOTS_DIR=$(CURDIR)/docs/img/admin $(BIN)/python -m pytest \
		tests/notifications/test_admin_day_browser.py -q $(PYTEST_ARGS)

# The admin's and hosted pages' French and German: extract every marked string into the .po files
# (translate the new ones there), then compile the .mo files that are committed beside them.
messages: $(STAMP)
	$(BIN)/python manage.py makemessages -l fr -l de --no-obsolete --no-location \
		-i 'tests/*' -i 'bench/*' -i 'docs/*' -i 'var/*' -i 'static/*' -i '*.egg-info/*'
	$(BIN)/python manage.py compilemessages -i .venv -i var

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var *.egg-info
