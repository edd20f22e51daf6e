"""The OpenAPI schema's error answers: each operation lists the 4xx it can give, in the API's error shape."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

from annotate.api.permissions import IsLead

ERRORS = {
    "400": "Invalid input: an object of field → messages, or `code` and `detail` (e.g. a NUL byte, malformed JSON).",
    "401": "No valid credentials (`Authorization: Token …` or a session).",
    "403": "Not allowed: not a lead, not in the taste's cohort, not your assignment, or a failed CSRF check.",
    "404": "No such object (or a malformed id in the path).",
    "409": "Refused in the object's current state; nothing was written.",
    "413": "The request body is larger than the server accepts.",
    "429": "Too many requests; retry after the `Retry-After` seconds.",
}


class ChiselAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, adding the error answers an operation gives unless the view documents them."""

    def _get_response_bodies(self, direction="response"):
        from annotate.api.views import ErrorSerializer

        bodies = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in bodies:
                shape = OpenApiTypes.OBJECT if code == "400" else ErrorSerializer
                bodies[code] = self._get_response_for_code(OpenApiResponse(shape, description=ERRORS[code]), code,
                                                           direction=direction)
        return dict(sorted(bodies.items()))

    def _error_codes(self) -> list[str]:
        unsafe = self.method in ("POST", "PUT", "PATCH", "DELETE")
        codes = ["400", "401"]  # a NUL in the query string is a 400 anywhere; every operation needs a login
        if unsafe or any(isinstance(p, IsLead) for p in self.view.get_permissions()):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        if unsafe:
            codes.append("413")
        if getattr(self.view, "throttle_scope", None):
            codes.append("429")
        return codes
