"""App config for the annotator pages."""

from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "frontend"
