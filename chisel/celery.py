"""The Celery application; tasks live in each app's `tasks.py`."""

import logging
import os
import threading

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chisel.settings")

app = Celery("chisel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def log_thread_crash(args) -> None:
    """`threading.excepthook` of the worker: a thread's uncaught exception as ONE log record. Python's own hook
    writes the traceback to `sys.stderr` piece by piece (down to single characters for the carets), and the
    worker's stderr is Celery's logging proxy, which makes every piece a log line: hundreds for one traceback."""
    if issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("chisel.threads").error("Thread %s died", name,
                                              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


@signals.worker_init.connect
def _log_thread_crashes(**kwargs) -> None:
    threading.excepthook = log_thread_crash
