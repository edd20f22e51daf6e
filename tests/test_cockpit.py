"""The round's cockpit: a read-only page that says what the round waits for, with actions to release stale leases
and to advance now."""

import re
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, Pair, Round, TrainingJob
from tests.conftest import make_annotator, make_round

pytestmark = pytest.mark.django_db


def judge(annotator, taste, count: int) -> None:
    for assignment in services.assignment_claim(annotator=annotator, taste=taste, count=count):
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice="left",
                                  client_uuid=uuid.uuid4())


def csrf_browser(user) -> Client:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    return browser


def post_action(browser: Client, round_: Round, action: str):
    page = browser.get(f"/admin/annotate/round/{round_.pk}/change/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    return browser.post(f"/admin/annotate/round/{round_.pk}/act/{action}/", {"csrfmiddlewaretoken": token}, follow=True)


@pytest.fixture
def held_round(taste):
    """The round of the bug: 3 of 4 labels in; one pair leased by a closed tab (its annotator idle for 6 minutes),
    another by an annotator at work."""
    round_ = make_round(taste, pairs=3, overlap=2)
    Round.objects.filter(pk=round_.pk).update(label_quota=4, pair_quota=3)
    closed_tab, working = make_annotator(taste, "closed-tab"), make_annotator(taste, "working")
    judge(working, taste, 2)
    judge(closed_tab, taste, 1)
    lease = services.assignment_claim(annotator=closed_tab, taste=taste, count=1)[0]
    six_minutes_ago = timezone.now() - timezone.timedelta(minutes=6)
    Assignment.objects.filter(annotator=closed_tab).update(claimed_at=six_minutes_ago - timezone.timedelta(seconds=5),
                                                          closed_at=six_minutes_ago)
    Assignment.objects.filter(pk=lease.pk).update(claimed_at=six_minutes_ago)
    active = services.assignment_claim(annotator=working, taste=taste, count=1)[0]
    return round_, lease, active


def test_the_cockpit_says_what_the_round_waits_for_and_who_holds_its_leases(lead_browser, held_round):
    round_, lease, active = held_round
    page = lead_browser.get(f"/admin/annotate/round/{round_.pk}/change/").content.decode()
    assert "1 more train label (3 of 4 in); 1 open to annotators now" in page
    assert "2 outstanding leases, held by" in page and "closed-tab (1)" in page and "working (1)" in page
    assert "1 idle for 5 minutes or more" in page
    assert re.search(r'<tr class="stale"><td>closed-tab</td><td>%d</td>' % lease.pair_id, page)
    assert "Release stale leases" in page and "Advance now" in page
    feed = lead_browser.get(f"/admin/annotate/round/{round_.pk}/progress/").json()  # the live part says the same
    assert "closed-tab (1)" in feed["waits_html"] and feed["actions"] == ["pause", "release", "advance", "cancel"]


def test_a_round_held_by_one_lease_says_so(lead_browser, taste):
    round_ = make_round(taste, pairs=1, overlap=2)
    Round.objects.filter(pk=round_.pk).update(label_quota=2, pair_quota=1)
    judge(make_annotator(taste, "working"), taste, 1)
    services.assignment_claim(annotator=make_annotator(taste, "closed-tab"), taste=taste, count=1)
    page = lead_browser.get(f"/admin/annotate/round/{round_.pk}/change/").content.decode()
    assert "1 more train label (1 of 2 in); 0 open to annotators now" in page
    assert "1 outstanding lease, held by closed-tab (1)</li>" in page  # not idle yet: no stale count
    assert "nothing but these leases can bring the missing labels" in page


def test_pairs_held_back_for_the_evaluation_are_not_counted_as_open(lead_browser, taste):
    """Held-back train pairs are handed out only once the round evaluates: they cannot bring the missing labels."""
    round_ = make_round(taste, pairs=3, overlap=2)
    Round.objects.filter(pk=round_.pk).update(label_quota=2, pair_quota=1)
    Pair.objects.filter(pk__in=list(round_.pairs.order_by("pk").values_list("pk", flat=True))[1:]).update(held_back=True)
    judge(make_annotator(taste, "working"), taste, 1)
    services.assignment_claim(annotator=make_annotator(taste, "closed-tab"), taste=taste, count=1)
    page = lead_browser.get(f"/admin/annotate/round/{round_.pk}/change/").content.decode()
    assert "1 more train label (1 of 2 in); 0 open to annotators now" in page
    assert "nothing but these leases can bring the missing labels" in page


def test_release_stale_leases_hands_back_only_the_idle_ones_once(lead, held_round):
    round_, lease, active = held_round
    browser = csrf_browser(lead)
    done = post_action(browser, round_, "release")
    assert b"released 1 lease idle for 5 minutes or more" in done.content
    assert Assignment.objects.get(pk=lease.pk).state == "expired"
    assert Assignment.objects.get(pk=active.pk).state == "leased"
    assert Pair.objects.get(pk=lease.pair_id).assigned_count == 1  # its slot is open again
    again = post_action(browser, round_, "release")
    assert b"no lease has been idle for 5 minutes; nothing released" in again.content
    assert Pair.objects.get(pk=lease.pair_id).assigned_count == 1
    assert b"closed-tab (1)" not in again.content


def test_advance_now_trains_on_the_labels_in_and_releases_the_leases(lead, held_round):
    round_, lease, active = held_round
    browser = csrf_browser(lead)
    done = post_action(browser, round_, "advance")
    assert b"Advance now: train on the labels in: done." in done.content
    assert Round.objects.get(pk=round_.pk).state == "training"
    assert TrainingJob.objects.filter(round=round_, state="queued").count() == 1
    assert not Assignment.objects.filter(pair__round=round_, state="leased").exists()
    again = browser.post(f"/admin/annotate/round/{round_.pk}/act/advance/",
                         {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value}, follow=True)
    assert b"does not allow it now" in again.content
    assert TrainingJob.objects.filter(round=round_).count() == 1


def test_advance_now_is_refused_without_a_label(lead_browser, taste):
    round_ = make_round(taste, pairs=2)
    refused = lead_browser.post(f"/admin/annotate/round/{round_.pk}/act/advance/", follow=True)
    assert b"No train label is in yet" in refused.content
    assert Round.objects.get(pk=round_.pk).state == "annotating"


def test_actions_need_a_lead_and_a_csrf_token(lead, annotator, held_round):
    round_, lease, active = held_round
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(lead)
    assert browser.post(f"/admin/annotate/round/{round_.pk}/act/release/").status_code == 403  # no token
    outsider = Client()
    outsider.force_login(annotator)
    assert outsider.post(f"/admin/annotate/round/{round_.pk}/act/release/").status_code == 302  # to the login
    assert outsider.get(f"/admin/annotate/round/{round_.pk}/progress/").status_code == 302
    assert Assignment.objects.get(pk=lease.pk).state == "leased"


def test_the_round_page_is_read_only_with_its_settings_as_a_table(lead_browser, taste):
    round_ = make_round(taste, pairs=2)
    Round.objects.filter(pk=round_.pk).update(training_config={"beta": 500, "reference": "parent"},
                                              sampling_config={"steps": 10, "prompt_ids": [1, 2, 3]},
                                              guard_rails={"adherence": {"max_drop": 0.05}})
    page = lead_browser.get(f"/admin/annotate/round/{round_.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "{&quot;" not in page and '{"' not in page  # no form, no raw JSON
    assert "<th>beta</th><td>500</td>" in page and "<th>reference</th><td>parent</td>" in page
    assert "<th>train prompts</th><td>3</td>" in page
    assert ("falls more than 5 points below the parent&#x27;s" in page
            and "one-sided sign test on the images whose verdict changed says the child is worse (p &lt; 0.05)" in page)
    posted = lead_browser.post(f"/admin/annotate/round/{round_.pk}/change/", {"label_quota": 1, "_save": "Save"})
    assert posted.status_code == 200 and Round.objects.get(pk=round_.pk).label_quota != 1


def test_a_queued_job_shows_what_is_ahead_and_a_silent_heartbeat_is_flagged(lead_browser, taste):
    first, second = make_round(taste, pairs=1, state="training"), make_round(taste, pairs=1, state="training")
    now = timezone.now()
    TrainingJob.objects.create(round=first, state="running", attempt=1, steps=300, step=176, worker="gpu-1",
                               lease_until=now + timezone.timedelta(minutes=1),
                               heartbeat_at=now - timezone.timedelta(minutes=4))
    TrainingJob.objects.create(round=second, steps=300)
    running = lead_browser.get(f"/admin/annotate/round/{first.pk}/change/").content.decode()
    assert "step 176 of 300, last heartbeat 4 min ago (late: the worker may be stuck" in running
    queued = lead_browser.get(f"/admin/annotate/round/{second.pk}/change/").content.decode()
    assert "waiting for a train worker; ahead of it: training round 1 of portraits: running, step 176/300" in queued


def test_a_sampling_round_shows_its_sample_hold_and_the_holds_taken_before_it(lead_browser, taste):
    earlier, later = make_round(taste, pairs=1, state="sampling"), make_round(taste, pairs=1, state="evaluating")
    now = timezone.now()
    Round.objects.filter(pk=earlier.pk).update(sampling_until=now + timezone.timedelta(minutes=5))
    Round.objects.filter(pk=later.pk).update(sampling_until=now + timezone.timedelta(minutes=14))
    page = lead_browser.get(f"/admin/annotate/round/{later.pk}/change/").content.decode()
    assert "eval sampling: a sample task holds the round" in page
    assert "ahead of it: sampling round 1 of portraits: held since" in page
    first = lead_browser.get(f"/admin/annotate/round/{earlier.pk}/change/").content.decode()
    assert "sampling: a sample task holds the round" in first and "ahead of it" not in first
