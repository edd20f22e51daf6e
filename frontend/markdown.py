"""Markdown written by leads (a taste's guidelines) as HTML for annotators, with any raw HTML escaped."""

import hashlib

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

# CommonMark with raw HTML off: tags in the source come out as text; links to javascript: and the like
# are refused by markdown-it's own link check.
_renderer = MarkdownIt("commonmark", {"html": False})


def markdown_html(text: str) -> SafeString:
    return mark_safe(_renderer.render(text))  # noqa: S308 - html is off, so the output holds no raw HTML


def text_version(text: str) -> str:
    """A short fingerprint: the page shows the guidelines again when they change."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
