"""Typed FreshBooks errors carrying FreshBooks' own errno, field and message."""


class FreshBooksError(Exception):
    """Base class of every error the client raises.

    `message` is FreshBooks' own text (or ours when FreshBooks sent none); `str(error)` puts it in
    a plain-words sentence for people, e.g.
    "FreshBooks rejected the request (email): Invalid email address. [errno 1004]".
    """

    summary = "FreshBooks returned an error"

    def __init__(self, message=None, *, status=None, errno=None, field=None, details=None,
                 retry_after=None, summary=None):
        self.status = status
        self.errno = errno
        self.field = field
        self.message = message
        self.details = details
        self.retry_after = retry_after
        # Errors the client builds from a response get a summary; a caller raising one with its
        # own (possibly translated) sentence gets that sentence alone.
        self._summary = summary if summary is not None else (None if message else self.summary)
        super().__init__(str(self))

    def __str__(self):
        head = self._summary or ""
        if self.field:
            head = f"{head} ({self.field})" if head else f"({self.field})"
        if self.message:
            text = f"{head}: {self.message}" if head else self.message
        else:
            text = f"{head}."
        if self.errno is not None:
            text = f"{text} [errno {self.errno}]"
        elif self.status is not None:
            text = f"{text} [HTTP {self.status}]"
        return text


class AuthError(FreshBooksError):
    """FreshBooks refused the credentials.

    `grant_invalid` is True when the refresh token or grant is gone (used, revoked, missing): no
    retry can help, the user must connect again.
    """

    summary = "FreshBooks refused the credentials"

    def __init__(self, message=None, *, grant_invalid=False, **kwargs):
        self.grant_invalid = grant_invalid
        super().__init__(message, **kwargs)


class NotFoundError(FreshBooksError):
    summary = "FreshBooks has no such object"


class ValidationError(FreshBooksError):
    summary = "FreshBooks rejected the request"


class RateLimitError(FreshBooksError):
    summary = "FreshBooks is limiting the request rate"


class ServerError(FreshBooksError):
    summary = "FreshBooks had a server error"


class NetworkError(FreshBooksError):
    summary = "FreshBooks could not be reached"


class MalformedResponseError(FreshBooksError):
    summary = "FreshBooks sent a response that is not what its API describes"
