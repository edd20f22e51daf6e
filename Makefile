# Chisel: `make demo` and `make test` each do all of their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

# The test suite's environment: PostgreSQL and Redis on 127.0.0.1, plain HTTP for the live servers.
# CHISEL_ENV_FILE=/dev/null keeps a demo's .env out of the tests.
TEST_DB_URL ?= postgres://postgres:postgres@127.0.0.1:5432/chisel
TEST_BROKER_URL ?= redis://127.0.0.1:6379/1
TEST_ENV = CHISEL_ENV_FILE=/dev/null SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	DATABASE_URL=$(TEST_DB_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL)
TEST_HTTP_ENV = SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false ALLOWED_HOSTS=localhost,127.0.0.1,testserver

.PHONY: demo test install services browser pytest bench-api clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements/web.txt requirements/worker.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

.env:
	@$(PY) -c 'import secrets; print(f"SECRET_KEY={secrets.token_urlsafe(50)}")' > .env
	@printf '%s\n' DEBUG=true SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false \
		SECURE_HSTS_SECONDS=0 >> .env
	@echo "Wrote .env for the demo (SQLite, Celery file-system transport, plain HTTP)."

demo: install .env
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo --url http://127.0.0.1:$(PORT)/
	@echo; echo "Chisel demo: http://127.0.0.1:$(PORT)/  (admin: http://127.0.0.1:$(PORT)/admin/, API docs: http://127.0.0.1:$(PORT)/api/docs/)"; echo
	@trap 'kill 0' EXIT INT TERM; \
	$(VENV)/bin/celery --quiet -A chisel worker --beat --schedule var/celerybeat-schedule -Q celery,sample,train --concurrency 1 --loglevel WARNING & \
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

services:
	bash .ci/services.sh

browser:
	bash .ci/browser.sh

test: install services browser
	$(TEST_ENV) $(PY) manage.py check --deploy --fail-level WARNING
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(TEST_ENV) $(PY) manage.py collectstatic --noinput -v0
	$(TEST_ENV) $(TEST_HTTP_ENV) $(VENV)/bin/pytest $(ARGS)

# Run part of the suite, e.g. `make pytest ARGS="-k claim -x"` (services must be up).
pytest: install
	$(TEST_ENV) $(TEST_HTTP_ENV) $(VENV)/bin/pytest $(ARGS)

# The API load benchmark against gunicorn on PostgreSQL (see bench/api_load.py --help).
bench-api: install services
	$(TEST_ENV) $(TEST_HTTP_ENV) $(PY) bench/api_load.py $(ARGS)

clean:
	rm -rf var .env
