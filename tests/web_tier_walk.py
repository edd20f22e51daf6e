"""Walk the web tier's pages and API on SQLite, then print which ML packages got imported (run in a fresh interpreter
by tests/test_web_without_torch.py: `python tests/web_tier_walk.py WORKDIR`; its last line is a JSON object)."""

import json
import os
import sys
import traceback
from pathlib import Path

ML = ("torch", "diffusers", "transformers", "peft")
first_import: dict[str, str] = {}


class Recorder:
    """A meta-path finder that notes who imported an ML package first, and lets the import go on."""

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ML and top not in first_import:
            frames = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename]
            first_import[top] = "".join(traceback.format_list(frames[-12:]))
        return None


def main(workdir: Path) -> dict:
    sys.meta_path.insert(0, Recorder())
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "chisel.settings", "CHISEL_ENV_FILE": "/dev/null", "SECRET_KEY": "walk-" + "x" * 50,
        "DEBUG": "false", "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "MEDIA_ROOT": str(workdir / "media"),
        "CHISEL_EXPORT_ROOT": str(workdir / "exports"), "CHISEL_CHECKPOINT_ROOT": str(workdir / "checkpoints"),
        "CELERY_BROKER_URL": "memory://", "CELERY_TASK_ALWAYS_EAGER": "false", "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
    })
    from chisel.wsgi import application  # noqa: F401 - what gunicorn imports

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return walk(root)


def walk(root: Path) -> dict:
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse
    from rest_framework.authtoken.models import Token

    from annotate import services
    from annotate.demo import demo_round_seed
    from annotate.launch import taste_base_checkpoint
    from annotate.models import Assignment, Export, Round, Taste

    User = get_user_model()
    lead = User.objects.create_superuser("lead", password="pw-lead-walk-1")
    annotator = User.objects.create_user("ann", password="pw-ann-walk-1")
    taste = Taste.objects.create(slug="walk", name="Walk")
    services.annotator_join(annotator=annotator, taste=taste)
    taste_base_checkpoint(taste=taste, model_path=root / "models" / "toy-sd")
    demo_round_seed(taste=taste, pairs=6, overlap=2)
    statuses: dict[str, int] = {}

    def hit(client, method, url, **kwargs):
        response = getattr(client, method)(url, **kwargs)
        statuses[f"{method.upper()} {url}"] = response.status_code
        assert response.status_code < 500, (url, response.status_code)
        return response

    # The annotator: pages and every API call.
    person = Client()
    person.force_login(annotator)
    for url in ("/", "/annotate/", f"/annotate/{taste.slug}/", "/api/v1/me/"):
        hit(person, "get", url)
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=annotator)[0].key}")
    leases = hit(api, "get", f"/api/v1/assignments/next/?taste={taste.slug}&prefetch=3").json()
    first, second = leases[0], leases[1]
    hit(api, "post", "/api/v1/judgements/", content_type="application/json",
        data={"assignment": first["id"], "choice": "left", "flags_left": [], "flags_right": [], "duration_ms": 900,
              "client_uuid": "00000000-0000-4000-8000-000000000001"})
    hit(api, "put", f"/api/v1/assignments/{first['id']}/judgement/", content_type="application/json",
        data={"choice": "right", "flags_left": [], "flags_right": [], "duration_ms": 700})
    hit(api, "post", f"/api/v1/assignments/{second['id']}/skip/")
    hit(api, "get", first["left"]["url"])

    # The lead: the API, every admin list and change page, the cockpit, charts, review, onboarding, launching.
    boss = Client()
    boss.force_login(lead)
    for url in ("/api/v1/tastes/", f"/api/v1/tastes/{taste.slug}/", "/api/v1/rounds/", "/api/schema/", "/api/docs/",
                "/admin/"):
        hit(boss, "get", url)
    export = hit(boss, "post", "/api/v1/exports/", content_type="application/json", data={"format": "pickapic"})
    hit(boss, "get", f"/api/v1/exports/{export.json()['id']}/")
    round_ = Round.objects.get(taste=taste)
    for url in (f"/api/v1/rounds/{round_.pk}/", f"/admin/annotate/round/{round_.pk}/progress/",
                f"/admin/annotate/round/{round_.pk}/review/", f"/admin/annotate/taste/{taste.pk}/charts/",
                f"/admin/annotate/taste/{taste.pk}/annotators/add/", "/admin/annotate/round/launch/"):
        hit(boss, "get", url)
    hit(boss, "post", f"/admin/annotate/round/{round_.pk}/act/advance/")  # annotating → training: a job queued
    Round.objects.filter(pk=round_.pk).update(state=Round.State.DONE)
    form = {"taste": taste.slug, "heldout_share": 0.3, "pair_quota": 10, "label_quota": 20, "overlap": 2,
            "eval_pair_quota": 8, "reference": "parent", "promotion_threshold": 0.5, "rail__adherence": "on",
            "rail__adherence__max_drop": 0.05, "auto_advance": "on", "prompt_text": "\n".join(f"a red shape {i}" for i in range(6))}
    hit(boss, "post", "/admin/annotate/round/launch/", data=form)
    launched = Round.objects.filter(taste=taste).order_by("-id").first()
    assert launched.state == Round.State.SAMPLING, launched.state
    for action in ("pause", "resume", "cancel"):
        hit(boss, "post", f"/admin/annotate/round/{launched.pk}/act/{action}/")
    for model in admin.site._registry:
        meta = model._meta
        hit(boss, "get", reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        if (first_row := model.objects.order_by("pk").first()) is not None:
            hit(boss, "get", reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first_row.pk]))
    assert Export.objects.exists() and Assignment.objects.filter(state="judged").exists()
    return {"statuses": statuses, "imported": first_import}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
