"""A taste's guidelines: written in the admin, shown on the judging page as safe HTML (frontend/markdown.py)."""

import json

import pytest
from django.test import Client

from annotate.models import Taste
from tests.conftest import make_annotator

pytestmark = pytest.mark.django_db


def judging_page(taste, annotator):
    browser = Client()
    browser.force_login(annotator)
    response = browser.get(f"/annotate/{taste.slug}/")
    assert response.status_code == 200
    return response


def page_config(response) -> dict:
    html, tag = response.content.decode(), '<script id="chisel-config" type="application/json">'
    start = html.index(tag) + len(tag)
    return json.loads(html[start:html.index("</script>", start)])


def test_the_taste_admin_page_edits_the_guidelines(taste, lead_browser):
    Taste.objects.filter(pk=taste.pk).update(guidelines="Prefer *sharp* eyes.")
    response = lead_browser.get(f"/admin/annotate/taste/{taste.pk}/change/")
    assert response.status_code == 200
    assert b'name="guidelines"' in response.content and b"Prefer *sharp* eyes." in response.content


def test_guidelines_are_rendered_as_markdown_with_raw_html_as_text(taste, annotator):
    Taste.objects.filter(pk=taste.pk).update(
        guidelines='## Eyes\n\n**Sharp**, not <b onclick="x()">glassy</b>. <img src=x onerror=alert(1)>\n\n'
        "[a trap](javascript:alert(1)) and [the board](https://example.org/)"
    )
    html = judging_page(taste, annotator).content.decode()
    assert "<h2>Eyes</h2>" in html and "<strong>Sharp</strong>" in html
    assert "&lt;b onclick=&quot;x()&quot;&gt;glassy&lt;/b&gt;" in html and "<img src=x" not in html
    assert 'href="javascript:' not in html and '<a href="https://example.org/">the board</a>' in html


def test_the_page_knows_the_guidelines_version_so_changed_ones_show_again(taste, annotator):
    assert page_config(judging_page(taste, annotator))["guidelines"] is None  # none written: never shown by itself
    Taste.objects.filter(pk=taste.pk).update(guidelines="One.")
    first = page_config(judging_page(taste, annotator))["guidelines"]
    Taste.objects.filter(pk=taste.pk).update(guidelines="Two.")
    second = page_config(judging_page(taste, annotator))["guidelines"]
    assert first and second and first != second


def test_an_annotator_outside_the_taste_sees_no_guidelines(taste):
    other = Taste.objects.create(slug="secret", name="Secret", guidelines="Hidden rules.")
    outsider = make_annotator(taste)
    browser = Client()
    browser.force_login(outsider)
    response = browser.get(f"/annotate/{other.slug}/")
    assert response.status_code == 403 and b"Hidden rules." not in response.content
