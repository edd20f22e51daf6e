"""The API's JSON parser: hostile bodies (nesting past the recursion limit, NUL characters) are a 400, not a 500."""

import codecs
import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

_NUL_ESCAPES = (b"\\u0000", b"\\U0000")  # in a JSON text, a NUL can only come as an escape


class SafeJSONParser(JSONParser):
    """DRF's JSONParser, refusing what PostgreSQL or Python's parser cannot take with a readable 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read()
        if any(escape in raw for escape in _NUL_ESCAPES) or b"\x00" in raw:
            raise ParseError("JSON parse error - strings may not contain NUL characters.")
        try:
            return json.loads(codecs.decode(raw, encoding), parse_constant=strict_constant)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

