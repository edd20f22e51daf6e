"""Role × endpoint × foreign object: every API operation in the schema, the image files, the judging page and
every admin page, as anonymous, annotator of taste A, annotator of taste B and lead; no unauthorised 2xx.

The operations are read from the OpenAPI schema and the admin pages from the admin's URL patterns, so a new
endpoint or admin view is in the matrix without anyone adding it. Every object a request names belongs to taste A
and to its annotator (a lease, a judgement), or to the leads (an export).
"""

import uuid

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from annotate import services
from annotate.models import Assignment, Export
from tests.conftest import make_round

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "annotator_a", "annotator_b", "lead")
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [(method.upper(), path) for path, item in SCHEMA["paths"].items() for method in item]
# What annotators may call; every other operation is for leads only (deny by default: a new endpoint is a lead's
# until it is added here).
ANNOTATOR_OPERATIONS = {
    ("GET", "/api/v1/assignments/next/"),
    ("POST", "/api/v1/judgements/"),
    ("PUT", "/api/v1/assignments/{assignment_id}/judgement/"),
    ("POST", "/api/v1/assignments/{assignment_id}/skip/"),
    ("GET", "/api/v1/me/"),
}
# The assignment an operation names, where it is not the live lease: amending needs a judged one.
JUDGED_ASSIGNMENT_OPERATIONS = {("PUT", "/api/v1/assignments/{assignment_id}/judgement/")}


@pytest.fixture
def world(settings):
    """Taste A with a round, its annotator holding one lease and one judgement, taste B with its own annotator,
    a lead and a finished export. No passwords (hashing is slow); browsers log in with force_login."""
    taste_a, taste_b = services.taste_create(slug="taste-a"), services.taste_create(slug="taste-b")
    round_a = make_round(taste_a, pairs=3)
    make_round(taste_b, pairs=1, colours=((10, 200, 10), (200, 200, 10)))  # files of its own: images are by content
    annotator_a, token_a = services.annotator_create(username="annotator-a", tastes=[taste_a])
    annotator_b, token_b = services.annotator_create(username="annotator-b", tastes=[taste_b])
    lead, token_lead = services.lead_create(username="lead")
    judged, leased = services.assignment_claim(annotator=annotator_a, taste=taste_a, count=2)
    services.judgement_submit(annotator=annotator_a, assignment_id=judged.pk, choice="left", client_uuid=uuid.uuid4())
    settings.CHISEL_EXPORT_ROOT.mkdir(parents=True, exist_ok=True)
    (settings.CHISEL_EXPORT_ROOT / "matrix.parquet").write_bytes(b"PAR1")
    export = Export.objects.create(requested_by=lead, state=Export.State.DONE, file_name="matrix.parquet")
    return {
        "users": {"annotator_a": annotator_a, "annotator_b": annotator_b, "lead": lead},
        "tokens": {"annotator_a": token_a, "annotator_b": token_b, "lead": token_lead},
        "taste": taste_a, "round": round_a, "judged": judged, "leased": leased, "export": export,
    }  # fmt: skip


# --- the API -------------------------------------------------------------------------------------


def api_request(world, method: str, path: str) -> tuple[str, dict, dict, bool, list[str]]:
    """(url, query, body, names_an_object, unknown parameters) for one operation of the schema."""
    operation = SCHEMA["paths"][path][method.lower()]
    assignment = world["judged"] if (method, path) in JUDGED_ASSIGNMENT_OPERATIONS else world["leased"]
    path_values = {"assignment_id": assignment.pk, "export_id": world["export"].pk, "round_id": world["round"].pk,
                   "slug": world["taste"].slug}  # fmt: skip
    query_values = {"taste": world["taste"].slug, "prefetch": 1}
    body_values = {"assignment": world["leased"].pk, "client_uuid": str(uuid.uuid4()), "choice": "left"}
    url, query, body, names_object, unknown = path, {}, {}, False, []
    for parameter in operation.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            if name not in path_values:
                unknown.append(name)
            url = url.replace(f"{{{name}}}", str(path_values.get(name, world["round"].pk)))
            names_object = True
        elif where == "query" and (parameter.get("required") or name == "taste"):
            if name not in query_values:
                unknown.append(name)
            query[name] = query_values.get(name, world["taste"].slug)
            names_object |= name == "taste"
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        component = SCHEMA["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[1]]
        for name in component.get("required", []):
            if name not in body_values:
                unknown.append(name)
            body[name] = body_values.get(name, world["round"].pk)
            names_object |= name == "assignment"
    return url, query, body, names_object, unknown


def api_allowed(role: str, *, is_lead_only: bool, names_object: bool) -> bool:
    """The policy: leads use the lead endpoints; an annotator uses the others, on taste A's objects only when
    they are taste A's annotator (every object named is theirs); everyone signed in may ask who they are."""
    if role == "anonymous":
        return False
    if is_lead_only:
        return role == "lead"
    return role == "annotator_a" or not names_object


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_operation_answers_2xx_only_to_whom_it_may(world, role, method, path):
    url, query, body, names_object, unknown = api_request(world, method, path)
    client = APIClient()
    if role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens'][role]}")
    allowed = api_allowed(role, is_lead_only=(method, path) not in ANNOTATOR_OPERATIONS, names_object=names_object)
    if query:
        url = f"{url}?{'&'.join(f'{k}={v}' for k, v in query.items())}"
    response = getattr(client, method.lower())(url, body or None, format="json")
    status = response.status_code
    if not allowed:
        assert not 200 <= status < 300, f"{role} got {status} from {method} {url}"
        assert status in (401, 403, 404, 405, 429), f"{role} got {status} from {method} {url}"
    elif not unknown:  # a new operation's unknown parameters may not make a valid request; its refusals still count
        assert 200 <= status < 300, f"{role} was refused {method} {url}: {status} {response.content[:300]!r}"


# --- image files and the judging page -------------------------------------------------------------


def browser_for(world, role: str) -> Client:
    browser = Client()
    if role != "anonymous":
        browser.force_login(world["users"][role])
    return browser


IMAGE_ALLOWED = {"anonymous": False, "annotator_a": True, "annotator_b": False, "lead": True}


@pytest.mark.parametrize("role", ROLES)
def test_image_files_are_served_only_to_their_taste(world, role):
    pair = Assignment.objects.select_related("pair__image_a", "pair__image_b").get(pk=world["leased"].pk).pair
    for image in (pair.image_a, pair.image_b):
        for client in (browser_for(world, role), _api_client(world, role)):
            status = client.get(image.file.url).status_code
            if IMAGE_ALLOWED[role]:
                assert status == 200, f"{role} was refused {image.file.url}: {status}"
            else:
                assert not 200 <= status < 300, f"{role} got {status} from {image.file.url}"


def _api_client(world, role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens'][role]}")
    return client


@pytest.mark.parametrize("role", ROLES)
def test_the_judging_page_of_a_taste_is_for_its_annotators(world, role):
    status = browser_for(world, role).get(f"/annotate/{world['taste'].slug}/").status_code
    if role == "annotator_a":
        assert status == 200
    else:
        assert not 200 <= status < 300, f"{role} got {status} from taste A's judging page"


# --- the admin ------------------------------------------------------------------------------------

PUBLIC_ADMIN_VIEWS = {"login", "logout"}  # the login form is for everyone; logging out is POST only


def admin_urls(world) -> list[str]:
    """Every GET-able admin URL, its arguments filled with taste A's objects (or the model's first row)."""
    values = {"taste_id": world["taste"].pk, "round_id": world["round"].pk, "app_label": "annotate",
              "action": "pause"}  # fmt: skip
    urls = []

    def walk(patterns, model_admin=None):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, model_admin)
                continue
            if not isinstance(pattern, URLPattern) or not pattern.name or pattern.name in PUBLIC_ADMIN_VIEWS:
                continue
            kwargs = {}
            for name in pattern.pattern.regex.groupindex:
                if name in ("object_id", "id") and model_admin is not None:
                    first = model_admin.model._default_manager.order_by("pk").first()
                    if first is None:
                        break
                    kwargs[name] = first.pk
                elif name in values:
                    kwargs[name] = values[name]
                else:
                    break
            else:
                if "object_id" in str(pattern.pattern) and "object_id" not in kwargs:
                    continue
                urls.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))

    walk([p for p in admin.site.get_urls() if not isinstance(p, URLResolver)])
    for model, model_admin in admin.site._registry.items():
        walk(model_admin.get_urls(), model_admin)
    return sorted(set(urls))


@pytest.mark.parametrize("role", [r for r in ROLES if r != "lead"])
def test_admin_pages_answer_no_one_but_leads(world, role):
    urls = admin_urls(world)
    assert len(urls) > 20 and "/admin/" in urls and "/admin/annotate/round/launch/" in urls
    browser = browser_for(world, role)
    answered = {url: browser.get(url).status_code for url in urls}
    assert [f"{url} {status}" for url, status in answered.items() if 200 <= status < 300] == []


def test_leads_reach_the_admin(world):
    browser = browser_for(world, "lead")
    assert browser.get("/admin/").status_code == 200
    assert browser.get(reverse("admin:annotate_round_changelist")).status_code == 200


# --- CSRF: a browser session writes only with the token ----------------------------------------------

UNSAFE_OPERATIONS = [(m, p) for m, p in OPERATIONS if m in ("POST", "PUT", "PATCH", "DELETE")]


def _written() -> tuple:
    from annotate.models import Judgement

    return (Judgement.objects.count(), Export.objects.count(),
            tuple(Assignment.objects.order_by("pk").values_list("state", flat=True)))  # fmt: skip


@pytest.mark.parametrize(("method", "path"), UNSAFE_OPERATIONS, ids=[f"{m} {p}" for m, p in UNSAFE_OPERATIONS])
def test_unsafe_operations_in_a_browser_session_need_the_csrf_token(world, method, path):
    role = "annotator_a" if (method, path) in ANNOTATOR_OPERATIONS else "lead"
    url, query, body, _, unknown = api_request(world, method, path)
    url += f"?{'&'.join(f'{k}={v}' for k, v in query.items())}" if query else ""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world["users"][role])
    before = _written()
    refused = getattr(browser, method.lower())(url, body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"], refused.content[:300]
    assert _written() == before
    # The same request with the token goes through: the refusal above was CSRF's, not something else's.
    browser.get("/annotate/taste-a/" if role == "annotator_a" else "/admin/")
    token = browser.cookies["csrftoken"].value
    accepted = getattr(browser, method.lower())(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    if not unknown:
        assert 200 <= accepted.status_code < 300, accepted.content[:300]


@pytest.mark.parametrize("role", ["anonymous", "annotator_a", "lead"])
def test_forms_need_the_csrf_token(world, role):
    forms = ["/login/", "/logout/", reverse("admin:annotate_round_act", args=[world["round"].pk, "pause"])]
    browser = Client(enforce_csrf_checks=True)
    if role != "anonymous":
        browser.force_login(world["users"][role])
    for url in forms:
        data = {"username": "lead", "password": "x"} if url == "/login/" else {}
        status = browser.post(url, data).status_code
        # Refused by CSRF (403), or for a non-lead sent to the admin's login page first (302) before any write.
        assert status == 403 or (status == 302 and url.startswith("/admin/") and role != "lead"), (url, status)
    world["round"].refresh_from_db()
    assert not world["round"].paused
