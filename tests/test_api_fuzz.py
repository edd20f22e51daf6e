"""Schemathesis against the live server: requests generated from the OpenAPI schema the app serves, as an
annotator and as a lead, draw no 5xx and no answer outside the documented schema.

The schema is generated at collection time by the generator `/api/schema/` serves from (schemathesis's lazy
`from_fixture` loader does not run on pytest 9), and a test checks that the served schema is that one. The
requests go over HTTP to pytest-django's live server. Bounded by count, not by the clock (a shared machine's clock
would make it flaky): a fixed seed and a few examples per operation and phase, about 1,750 requests in all.
"""

import pytest
import requests
import schemathesis
from django.db import connection
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.config import SchemathesisConfig

from annotate import services
from tests.conftest import make_round

pytestmark = [pytest.mark.integration]

GENERATED_SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 22,  # the same requests on every run, so a failure reproduces (change it to explore)
        "generation": {"max-examples": 10, "dictionaries": {"string": {"dictionary": "hostile", "probability": 0.3}}},
        # Strings that broke servers before, mixed into the generated ones.
        "dictionaries": {"hostile": {"values": ["\x00", "a\x00b", "' OR 1=1 --", "../../etc/passwd", "%00", "\ud7ff" * 3]}},
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(GENERATED_SCHEMA, config=CONFIG)
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def world(transactional_db):
    """Two tastes with an annotator each (no passwords: hashing is slow), pairs to judge, and a lead; committed,
    so the live server sees them."""
    taste, other = services.taste_create(slug="fuzz-a"), services.taste_create(slug="fuzz-b")
    make_round(taste, pairs=20)
    make_round(other, pairs=5)
    tokens = {
        "annotator": services.annotator_create(username="fuzz-annotator", tastes=[taste])[1],
        "other": services.annotator_create(username="fuzz-other", tastes=[other])[1],
        "lead": services.lead_create(username="fuzz-lead")[1],
    }
    return {"tokens": tokens}


def run_case(case, *, live_server, token: str) -> None:
    case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Token {token}"}, checks=CHECKS)


def test_the_fuzzed_schema_is_the_one_the_server_serves(world, live_server):
    served = requests.get(
        f"{live_server.url}/api/schema/?format=json",
        headers={"Authorization": f"Token {world['tokens']['annotator']}"}, timeout=30,
    )  # fmt: skip
    assert served.status_code == 200
    assert served.json() == schemathesis.openapi.from_dict(GENERATED_SCHEMA).raw_schema


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_annotator_requests_draw_no_5xx_and_match_the_schema(case, world, live_server):
    assert connection.vendor == "postgresql"
    run_case(case, live_server=live_server, token=world["tokens"]["annotator"])


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_lead_requests_draw_no_5xx_and_match_the_schema(case, world, live_server):
    run_case(case, live_server=live_server, token=world["tokens"]["lead"])
