"""WSGI entry point (gunicorn chisel.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chisel.settings")
application = get_wsgi_application()
