"""When to try a failed download again, and how long to wait first."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retryable_status(status: int) -> bool:
    """A 429 or 5xx can change on its own; any other 4xx will not."""
    return status == 429 or 500 <= status <= 599


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None.

    A date in the past is 0; a value that is neither form is ignored (None), as
    if the header were absent.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_s(base: float, retry: int, rng: random.Random) -> float:
    """The wait before retry number ``retry`` (1, 2, ...): ``base`` doubling each time,
    drawn from its upper half so that many URLs failing at once spread out."""
    delay = base * 2 ** (retry - 1)
    return rng.uniform(delay / 2, delay)
