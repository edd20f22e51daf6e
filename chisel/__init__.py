"""Django project package for Chisel: settings, urls, the Celery app and WSGI/ASGI entry points."""

from chisel.celery import app as celery_app

__all__ = ["celery_app"]
