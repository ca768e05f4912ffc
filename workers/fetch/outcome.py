"""What a download gives back: the bytes, or a reason a user can read and act on."""

from __future__ import annotations

from dataclasses import dataclass


class FetchError(Exception):
    """One URL's failure. ``reason`` is short and user-facing ("HTTP 404", "timed out
    after 15 s", "refused address 127.0.0.1 (loopback)"); ``retryable`` says whether
    trying again later could succeed (a timeout, a 5xx, a 429), so a job's retry
    reruns only those."""

    def __init__(self, reason: str, retryable: bool, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts

    def __reduce__(self) -> tuple[type[FetchError], tuple[str, bool, int]]:
        # Picklable with its fields, so it may cross process boundaries intact.
        return (FetchError, (self.reason, self.retryable, self.attempts))


@dataclass(frozen=True)
class Fetched:
    """A downloaded image: decoded once to check it is one, its bytes untouched."""

    url: str  # as given
    final_url: str  # after redirects
    data: bytes
    content_type: str | None  # as the server said; never trusted for the format
    seconds: float  # the whole download, retries and their waits included
    attempts: int
