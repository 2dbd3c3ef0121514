"""Typed FreshBooks errors carrying FreshBooks' own errno, field and message."""


class FreshBooksError(Exception):
    """Base class. `str(error)` is a plain-words message for people."""

    default_message = "FreshBooks returned an error"

    def __init__(self, message=None, *, status=None, errno=None, field=None, details=None,
                 retry_after=None):
        self.status = status
        self.errno = errno
        self.field = field
        self.message = message or self.default_message
        self.details = details
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self):
        text = self.message
        if self.field:
            text = f"({self.field}) {text}"
        if self.errno is not None:
            text = f"{text} [errno {self.errno}]"
        return text


class AuthError(FreshBooksError):
    default_message = "FreshBooks refused the credentials"

    def __init__(self, message=None, *, grant_invalid=False, **kwargs):
        self.grant_invalid = grant_invalid
        super().__init__(message, **kwargs)


class NotFoundError(FreshBooksError):
    default_message = "FreshBooks has no such object"


class ValidationError(FreshBooksError):
    default_message = "FreshBooks rejected the data"


class RateLimitError(FreshBooksError):
    default_message = "FreshBooks asked us to slow down"


class ServerError(FreshBooksError):
    default_message = "FreshBooks had a server error"


class NetworkError(FreshBooksError):
    default_message = "FreshBooks could not be reached"


class MalformedResponseError(FreshBooksError):
    default_message = "FreshBooks sent a response that is not valid JSON of the expected shape"
