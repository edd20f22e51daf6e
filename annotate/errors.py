"""Domain errors raised by services; the API maps each to an HTTP status and a stable code."""


class DomainError(Exception):
    """A refused use case: nothing was written. `code` is stable; the message is for people."""

    code = "refused"
    status = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class LeaseExpired(DomainError):
    code = "lease_expired"
    status = 409


class AssignmentClosed(DomainError):
    code = "assignment_closed"
    status = 409


class DuplicateClientUuid(DomainError):
    code = "duplicate_client_uuid"
    status = 409


class TooManyExports(DomainError):
    code = "too_many_exports"
    status = 429


class RoundClosed(DomainError):
    """The pair's round no longer takes labels of its kind (its dataset froze, or its decision was made)."""

    code = "round_closed"
    status = 409
