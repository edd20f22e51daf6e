"""Annotator trust in training: which annotators' judgements a round trains on, and with what weight."""

from annotate.annotator_stats import taste_annotator_stats
from annotate.errors import DomainError
from annotate.models import Round


def taste_trust(*, round_: Round) -> dict[str, float]:
    """Each annotator's trust in the round's taste (agreement.trust_score over the taste's whole history)."""
    stats = taste_annotator_stats(taste=round_.taste)
    return {row["username"]: row["trust"] for row in stats["annotators"] if row["judged"]}


def training_filter(*, round_: Round) -> tuple[list[str], dict[str, float]]:
    """(annotators to keep, weight per annotator) for the round's training export, by its trust mode: off keeps
    everybody at weight 1; exclude keeps those whose trust reaches the threshold (refusing when none does);
    weight keeps everybody, each row weighted by its annotator's trust."""
    if round_.trust_mode == "off":
        return [], {}
    trust = taste_trust(round_=round_)
    if round_.trust_mode == "weight":
        return [], trust
    kept = sorted(name for name, score in trust.items() if score >= round_.trust_threshold)
    if not kept:
        raise DomainError(
            f"No annotator of {round_.taste.slug} has a trust of {round_.trust_threshold:g} or more; "
            "lower the round's trust threshold or set its trust mode to off."
        )
    return kept, {}
