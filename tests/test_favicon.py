"""The favicon: linked from the login, picker, judging and admin pages, and served as SVG."""

import xml.etree.ElementTree as ET

import httpx
import pytest
from django.test import Client

from annotate import services

pytestmark = pytest.mark.django_db

LINK = '<link rel="icon" href="/static/frontend/favicon.svg" type="image/svg+xml">'


def test_every_page_links_the_favicon(annotator, taste, lead_browser):
    services.annotator_join(annotator=annotator, taste=services.taste_create(slug="second"))
    assert LINK in Client().get("/login/").content.decode()
    browser = Client()
    browser.force_login(annotator)
    picker = browser.get("/annotate/")  # two tastes: the picker
    assert "Choose a taste" in picker.content.decode() and LINK in picker.content.decode()
    assert LINK in browser.get(f"/annotate/{taste.slug}/").content.decode()
    for page in ("/admin/", "/admin/login/", f"/admin/annotate/taste/{taste.pk}/charts/", "/admin/annotate/round/"):
        response = lead_browser.get(page) if page != "/admin/login/" else Client().get(page)
        assert response.status_code == 200 and LINK in response.content.decode(), page


def test_the_favicon_is_served_as_svg(live_server):
    response = httpx.get(f"{live_server.url}/static/frontend/favicon.svg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    assert ET.fromstring(response.content).tag == "{http://www.w3.org/2000/svg}svg"


def test_favicon_ico_is_sent_to_the_svg(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301 and answer["Location"] == "/static/frontend/favicon.svg"
