"""Splitting a taste whose cohort holds two camps: a new taste for the chosen annotators, from the same checkpoint."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate import locks, services
from annotate.errors import DomainError
from annotate.models import Taste, TasteMembership


def taste_split(*, taste: Taste, slug: str, name: str, annotators: list[AbstractBaseUser]) -> Taste:
    """A new taste `slug` whose cohort is `annotators`, who leave `taste`'s cohort.

    The new taste shares the history up to the split: it starts from `taste`'s current checkpoint (its rounds
    train children of that lineage) and keeps its guidelines and gold settings. From then on each taste trains
    only on its own pairs, which only its own cohort may judge, so the other camp's judgements never enter it.
    """
    members = set(taste.annotators.values_list("pk", flat=True))
    chosen = {a.pk for a in annotators}
    if not chosen:
        raise DomainError("Choose the annotators who go to the new taste.")
    if not chosen <= members:
        raise DomainError(f"Only annotators of {taste.slug}'s cohort can go to a taste split from it.")
    if chosen == members:
        raise DomainError(f"Leave someone in {taste.slug}: a split moves some of its cohort, not all of it.")
    if Taste.objects.filter(slug=slug).exists():
        raise DomainError(f"There is already a taste '{slug}'.")
    with transaction.atomic():
        locks.lock_taste(taste_id=taste.pk).get()
        new = Taste.objects.create(
            slug=slug, name=name or slug, guidelines=taste.guidelines, gold_share=taste.gold_share,
            speed_floor_ms=taste.speed_floor_ms, current_checkpoint=taste.current_checkpoint,
            description=f"Split from {taste.slug}: the camp of {', '.join(sorted(a.get_username() for a in annotators))}.",
        )
        TasteMembership.objects.bulk_create(TasteMembership(taste=new, annotator_id=pk) for pk in sorted(chosen))
        TasteMembership.objects.filter(taste=taste, annotator_id__in=chosen).delete()
        # Their leases in the old taste go back to its pool: nothing they judge reaches it after the split.
        leases = list(locks.lock_taste_leases_of(taste_id=taste.pk, annotator_ids=sorted(chosen))
                      .values_list("id", "pair_id"))
        services.leases_expire(leases=leases, now=timezone.now())
    return new
