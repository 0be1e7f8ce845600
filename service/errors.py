"""Domain errors, each carrying what OpenAI's error envelope needs.

The web layer maps every `FtserveError` to `{"error": {"message", "type", "param", "code"}}`
with the error's `status` in one place (`service.api.errors`). The hierarchy:

    FtserveError                      500  server_error
    ├── InvalidRequestError           400  invalid_request_error
    │   ├── InvalidFileError          400  a file's content is not what its purpose needs
    │   └── ConflictError             400  the object is in a state that forbids the action
    │                                      (400, not 409: the SDKs retry 409 automatically)
    ├── AuthenticationError           401  authentication_error (missing or unknown key)
    ├── NotFoundError                 404  invalid_request_error ("No such File object: …")
    ├── PayloadTooLargeError          413  invalid_request_error
    └── ServiceUnavailableError       503  service_unavailable_error
"""

from __future__ import annotations


class FtserveError(Exception):
    """Base of every error the API reports to a client."""

    status: int = 500
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def envelope(self) -> dict[str, dict[str, str | None]]:
        """OpenAI's error body: all four keys always present."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequestError(FtserveError):
    status = 400
    type = "invalid_request_error"


class InvalidFileError(InvalidRequestError):
    """The uploaded bytes do not suit the declared purpose (bad JSONL, missing messages…)."""


class ConflictError(InvalidRequestError):
    """The object exists but its state forbids the action (complete a cancelled upload…)."""


class AuthenticationError(FtserveError):
    status = 401
    type = "authentication_error"


class NotFoundError(FtserveError):
    status = 404
    type = "invalid_request_error"

    @classmethod
    def for_object(cls, kind: str, object_id: str, *, param: str = "id") -> NotFoundError:
        """`No such File object: file-abc`, as OpenAI words it."""
        return cls(f"No such {kind} object: {object_id}", param=param)


class PayloadTooLargeError(FtserveError):
    status = 413
    type = "invalid_request_error"


class ServiceUnavailableError(FtserveError):
    status = 503
    type = "service_unavailable_error"
