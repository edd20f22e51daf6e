"""Template filter: a timedelta in words ("30 minutes", "2 hours")."""

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def in_words(value: timedelta | None) -> str:
    if not isinstance(value, timedelta):
        return ""
    minutes = round(value.total_seconds() / 60)
    if minutes < 1:
        return f"{round(value.total_seconds())} seconds"
    if minutes % 60 or minutes < 60:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    hours = minutes // 60
    return f"{hours} hour{'' if hours == 1 else 's'}"
