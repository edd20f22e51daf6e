"""The API's JSON parser: hostile bodies (nesting past the recursion limit, NUL characters) are a 400, not a 500."""

import codecs
import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant


class SafeJSONParser(JSONParser):
    """DRF's JSONParser, refusing with a readable 400 what Python's parser or PostgreSQL cannot take."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read()
        try:
            data = json.loads(codecs.decode(raw, encoding), parse_constant=strict_constant)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        # In JSON text a NUL can only come escaped; look for it in the parsed strings only then.
        if b"\\u0000" in raw and _holds_nul(data):
            raise ParseError("JSON parse error - strings may not contain NUL characters.")
        return data


def _holds_nul(data) -> bool:
    """Whether any string (key or value) in `data` holds a NUL; iterative, so depth costs no stack."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
