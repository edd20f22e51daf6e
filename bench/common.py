"""What the benchmarks share: a throw-away PostgreSQL database and the environment of their Django processes."""

import os
import secrets
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


def database_recreate(database_url: str) -> None:
    """Drop and create the bench database, connected to the server's `postgres` database."""
    name = urlsplit(database_url).path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"Refusing to drop database '{name}': a bench database's name must contain 'bench'.")
    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def django_env(database_url: str, files: str) -> dict[str, str]:
    """The environment of every Django process of a bench: its own database, files and settings."""
    for sub in ("media", "static", "exports"):
        Path(files, sub).mkdir(exist_ok=True)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chisel.settings",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(Path(files, "media")),
        "STATIC_ROOT": str(Path(files, "static")),
        "CHISEL_EXPORT_ROOT": str(Path(files, "exports")),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CHISEL_ENV_FILE": "/dev/null",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1",
        # Benchmarks drive the API at machine speed: the rates are still counted (their cost is measured), never met.
        **{f"CHISEL_THROTTLE_{scope}": "1000000/min" for scope in ("CLAIMS", "SUBMISSIONS", "EXPORTS", "LOGIN")},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
