"""Queueing Celery tasks by name once the transaction commits: the domain never imports `annotate.tasks`."""

from importlib import import_module

from celery import current_app
from django.db import transaction

SAMPLE_PAIRS = "annotate.tasks.sample_pairs"
SAMPLE_ROUND_EVAL = "annotate.tasks.sample_round_eval"
TRAIN_ROUND = "annotate.tasks.train_round"
RUN_EXPORT = "annotate.tasks.run_export"


def enqueue(name: str, *args, **kwargs) -> None:
    """Send the task `name` now (routed by CELERY_TASK_ROUTES); run in place when tasks are eager (the loop bench)."""
    if current_app.conf.task_always_eager:
        import_module(name.rpartition(".")[0])  # registers the task in this process (no worker imported it)
        current_app.tasks[name].apply_async(args, kwargs)
        return
    current_app.send_task(name, args=list(args), kwargs=kwargs)


def enqueue_on_commit(name: str, *args, **kwargs) -> None:
    """Send the task `name` after the current transaction commits (at once outside one); nothing on a rollback."""
    transaction.on_commit(lambda: enqueue(name, *args, **kwargs))
