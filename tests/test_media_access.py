"""Image files go only to leads and to the annotators of a taste with a pair showing them."""

from django.test import Client

from annotate.models import Pair
from tests.conftest import client_for, make_annotator, make_round, png_bytes, services
from annotate.images import image_store


def image_urls(round_) -> list[str]:
    pair = Pair.objects.filter(round=round_).select_related("image_a", "image_b").first()
    return [pair.image_a.file.url, pair.image_b.file.url]


def other_round():
    """A round of another taste, with image files of its own."""
    other = services.taste_create(slug="landscapes")
    round_ = make_round(other, pairs=1)
    pair = Pair.objects.get(round=round_)
    for field, colour in (("image_a", (1, 200, 1)), ("image_b", (3, 3, 3))):
        setattr(pair, field, image_store(prompt=pair.prompt, data=png_bytes(colour), seed=9))
    pair.save()
    return round_


def test_annotators_get_their_tastes_images_and_nothing_else(taste, annotator, lead):
    mine, theirs = image_urls(make_round(taste, pairs=1)), image_urls(other_round())
    for client in (client_for(annotator), Client()):
        if isinstance(client, Client):
            client.force_login(annotator)  # the judging page's session, as well as the API token
        for url in mine:
            assert client.get(url).status_code == 200
        for url in theirs:
            assert client.get(url).status_code == 404  # the same answer as a missing file
    for url in mine + theirs:
        assert client_for(lead).get(url).status_code == 200


def test_joining_a_taste_opens_its_images_and_strangers_are_sent_to_log_in(taste):
    outsider = make_annotator(None)
    url = image_urls(make_round(taste, pairs=1))[0]
    assert client_for(outsider).get(url).status_code == 404
    services.annotator_join(annotator=outsider, taste=taste)
    assert client_for(outsider).get(url).status_code == 200
    assert Client().get(url).status_code == 302
    assert client_for(outsider).get("/media/../settings.py").status_code == 404


def test_the_image_check_is_one_query(taste, annotator, django_assert_num_queries):
    url = image_urls(make_round(taste, pairs=3))[0]
    client = client_for(annotator)
    client.get("/api/v1/me/")  # the token is cached from here on
    with django_assert_num_queries(1):
        assert client.get(url).status_code == 200
