"""Reads for the round's cockpit: what a round waits for (leases, jobs, what is ahead of them) and its settings."""

from datetime import datetime, timedelta

from django.utils import timezone

from annotate import selectors
from annotate.guard_rails import describe_guard_rails
from annotate.loop import round_progress
from annotate.models import Assignment, Pair, Round, TrainingJob
from annotate.services import STALE_LEASE_IDLE

S = Round.State
HEARTBEAT_LATE = timedelta(seconds=30)  # the heartbeat renews every 5 s; six missed in a row is worth a word


def round_waits(*, round_id: int, now: datetime | None = None) -> dict:
    """{"reasons": [sentence], "leases": [lease], "jobs": [job], "stale_leases": n} for the round as it is now."""
    now = now or timezone.now()
    round_ = Round.objects.select_related("taste").get(pk=round_id)
    progress = round_progress(round_id=round_id)
    leases = _leases(round_, now) if round_.state in Round.OPEN_STATES else []
    jobs = _jobs(round_, now)
    return {"reasons": _reasons(round_, progress, leases, jobs), "leases": leases, "jobs": jobs,
            "stale_leases": sum(lease["stale"] for lease in leases),
            "stale_after_minutes": int(STALE_LEASE_IDLE.total_seconds() // 60)}


def _leases(round_: Round, now: datetime) -> list[dict]:
    rows = list(Assignment.objects.filter(pair__round=round_, state=Assignment.State.LEASED)
                .select_related("annotator", "pair").order_by("lease_expires_at", "id"))
    active = selectors.annotators_last_active(taste_id=round_.taste_id, annotator_ids={a.annotator_id for a in rows})
    leases = []
    for assignment in rows:
        idle = now - active.get(assignment.annotator_id, assignment.claimed_at)
        leases.append({
            "id": assignment.pk, "annotator": assignment.annotator.get_username(), "pair": assignment.pair_id,
            "kind": assignment.pair.kind, "claimed_at": assignment.claimed_at,
            "expires_at": assignment.lease_expires_at, "expired": assignment.lease_expires_at <= now,
            "idle": _duration(idle), "stale": idle >= STALE_LEASE_IDLE,
        })
    return leases


def _jobs(round_: Round, now: datetime) -> list[dict]:
    jobs = []
    job = round_.training_jobs.filter(state__in=(TrainingJob.State.QUEUED, TrainingJob.State.RUNNING)).order_by("-id").first()
    if job is not None:
        ahead = (TrainingJob.objects.filter(state__in=(TrainingJob.State.QUEUED, TrainingJob.State.RUNNING), id__lt=job.pk)
                 .select_related("round__taste").order_by("id"))
        jobs.append({"kind": "training", "state": job.state, "detail": _training_detail(job, now),
                     "late": _heartbeat_late(job, now),
                     "ahead": [_ahead(other, now) for other in ahead] if job.state == TrainingJob.State.QUEUED else []})
    if round_.sampling_until and round_.sampling_until > now:
        kind = "eval sampling" if round_.state == S.EVALUATING else "sampling"
        ahead = (Round.objects.filter(sampling_until__gt=now, sampling_until__lt=round_.sampling_until)
                 .exclude(pk=round_.pk).select_related("taste").order_by("sampling_until"))
        jobs.append({"kind": kind, "state": "running or queued", "late": False,
                     "detail": f"a sample task holds the round (its hold runs out at {_clock(round_.sampling_until)})",
                     "ahead": [f"sampling {_round_name(other)}: held since "
                               f"{_clock(other.sampling_until - _sampling_hold())}" for other in ahead]})
    return jobs


def _ahead(job: TrainingJob, now: datetime) -> str:
    if job.state == TrainingJob.State.QUEUED:
        return f"training {_round_name(job.round)}: queued since {_clock(job.created_at)}"
    lapsed = ", its lease ran out (the beat hands it to a worker again)" if job.lease_until <= now else ""
    return f"training {_round_name(job.round)}: running, step {job.step}/{job.steps}{lapsed}"


def _training_detail(job: TrainingJob, now: datetime) -> str:
    if job.state == TrainingJob.State.QUEUED:
        return f"queued since {_clock(job.created_at)}, waiting for a train worker"
    beat = f"last heartbeat {_duration(now - job.heartbeat_at)} ago" if job.heartbeat_at else "no heartbeat yet"
    if _heartbeat_late(job, now):
        beat += " (late: the worker may be stuck or unable to reach the database)"
    return (f"attempt {job.attempt} on {job.worker or '?'}: step {job.step} of {job.steps}, {beat}, "
            f"lease until {_clock(job.lease_until)}")


def _heartbeat_late(job: TrainingJob, now: datetime) -> bool:
    return job.state == TrainingJob.State.RUNNING and job.heartbeat_at is not None and now - job.heartbeat_at > HEARTBEAT_LATE


def _reasons(round_: Round, progress: dict, leases: list[dict], jobs: list[dict]) -> list[str]:
    """What the round waits for, in sentences."""
    if round_.state in (S.DONE, S.CANCELLED):
        return []
    if round_.state == S.FAILED:
        return ["the lead: retry the failed step, or cancel the round"]
    if round_.state == S.DRAFT:
        return ["to be started"]
    reasons = ["the lead to resume it: a paused round hands out no pairs and samples nothing"] if round_.paused else []
    live = [lease for lease in leases if not lease["expired"]]
    can_come = True
    if round_.state in (S.SAMPLING, S.ANNOTATING):
        done, total = progress["annotation"]["done"], progress["annotation"]["total"]
        if round_.state == S.SAMPLING:
            reasons.append("the sampler's first pairs")
        if done >= total and not round_.auto_advance:
            reasons.append("the lead to advance it: its labels are in and auto-advance is off")
        elif done < total:
            slots, can_come = _open_slots(round_, progress)
            answers = progress["annotation"].get("all", done)  # the quota counts decisive labels only
            undecided = f"; {answers - done} ties and both-bad not counted" if answers > done else ""
            reasons.append(f"{_plural(total - done, 'more train label')} ({done} of {total} in{undecided}); {slots}")
    elif round_.state == S.EVALUATING:
        evaluation = progress["evaluation"]
        if evaluation["pairs"] < round_.eval_pair_quota:
            reasons.append(f"eval pairs from the sampler ({evaluation['pairs']} of {round_.eval_pair_quota} made)")
        if evaluation["done"] < evaluation["total"]:
            reasons.append(f"{_plural(evaluation['total'] - evaluation['done'], 'more eval label')} "
                           f"({evaluation['done']} of {evaluation['total']} in)")
        base = progress["base"]
        if base["pairs"] < base["wanted"]:
            reasons.append(f"child-vs-base pairs from the sampler ({base['pairs']} of {base['wanted']} made)")
        if base["done"] < base["total"]:
            reasons.append(f"{_plural(base['total'] - base['done'], 'more child-vs-base label')} "
                           f"({base['done']} of {base['total']} in)")
        if evaluation["done"] >= evaluation["total"] and base["done"] >= base["total"] and not round_.auto_advance:
            reasons.append("the lead to decide: the eval labels are in and auto-advance is off")
    if live:
        holders = {}
        for lease in live:
            holders[lease["annotator"]] = holders.get(lease["annotator"], 0) + 1
        stale = sum(lease["stale"] for lease in live)
        reasons.append(f"{_plural(len(live), 'outstanding lease')}, held by "
                       + ", ".join(f"{name} ({count})" for name, count in holders.items())
                       + (f"; {stale} idle for {int(STALE_LEASE_IDLE.total_seconds() // 60)} minutes or more"
                          if stale else ""))
        missing = progress["annotation"]["done"] < progress["annotation"]["total"]
        if round_.state == S.ANNOTATING and missing and not can_come:
            reasons.append("nothing but these leases can bring the missing labels: release the stale ones (their pairs "
                           "go to the next annotator who asks), or advance now")
    for job in jobs:
        line = f"{job['kind']}: {job['detail']}"
        if job["ahead"]:
            line += f"; ahead of it: {'; '.join(job['ahead'])}"
        reasons.append(line)
    if round_.state == S.TRAINING and not jobs:
        reasons.append("the beat to move it on (its training job has finished)")
    return reasons


def _open_slots(round_: Round, progress: dict) -> tuple[str, int]:
    """How many judgements annotators can still be handed (open slots of sampled pairs, pairs still to sample)."""
    free = sum(o - a for o, a in Pair.objects.filter(round=round_, kind=Pair.Kind.TRAIN, held_back=False)
               .values_list("overlap", "assigned_count"))
    unsampled = max(0, progress["sampling"]["total"] - progress["sampling"]["done"])
    parts = [f"{free} open to annotators now"] + ([f"{_plural(unsampled, 'pair')} still to sample"] if unsampled else [])
    return ", ".join(parts), free + unsampled


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def round_settings(round_: Round) -> list[tuple[str, list[tuple[str, str]]]]:
    """The round's settings as (section, [(name, value)]) rows; blank model settings show what they fall back to."""
    from annotate.sampling import round_sample_params

    sampling = {k: v for k, v in round_.sampling_config.items() if k not in ("prompt_ids", "eval_prompt_ids")}
    sampling_rows = [(key, _value(value)) for key, value in sampling.items()]
    if round_.parent_checkpoint_id:
        params = round_sample_params(round_)
        sampling_rows += [(key, f"{_value(getattr(params, key))} (the base model's default)")
                          for key in ("steps", "guidance", "width", "height") if key not in sampling]
    sampling_rows += [("train prompts", str(len(round_.sampling_config.get("prompt_ids") or []))),
                      ("held-out prompts", str(len(round_.sampling_config.get("eval_prompt_ids") or [])))]
    training = [(key, _value(value)) for key, value in round_.training_config.items()]
    training.append(("other fields", "the trainer's defaults for the model's family"))
    rails = describe_guard_rails(round_.guard_rails) or [("guard-rails", "none")]
    return [
        ("Round", [("taste", round_.taste.slug), ("parent checkpoint", _value(round_.parent_checkpoint_id)),
                   ("child checkpoint", _value(round_.child_checkpoint_id)),
                   ("auto-advance", "yes: trains and decides by itself once the quotas are met" if round_.auto_advance
                    else "no: the lead advances it"),
                   ("created", _clock(round_.created_at, date=True))]),
        ("Quotas", [("train pairs", str(round_.pair_quota)), ("train labels", str(round_.label_quota)),
                    ("annotators per pair", str(round_.overlap)), ("eval pairs", str(round_.eval_pair_quota))]),
        ("Sampling", sampling_rows),
        ("Training", training),
        ("Promotion", [("rule", f"promote when the lower bound of the child's win rate (95% interval clustered by prompt, a tie "
                                f"counting half) clears {round_.promotion_threshold:g} and every guard-rail holds"),
                       *rails]),
    ]


def _value(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return str(value)


def _round_name(round_: Round) -> str:
    return f"round {round_.number} of {round_.taste.slug}"


def _sampling_hold() -> timedelta:
    from annotate.sampling import sampling_hold

    return sampling_hold()


def _clock(moment: datetime | None, date: bool = False) -> str:
    if moment is None:
        return "—"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
