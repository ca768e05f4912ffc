"""Image downloads for URL-list sources, behind an SSRF guard.

``Fetcher(settings.sources).fetch(url)`` gives a ``Fetched`` or raises a
``FetchError`` whose ``reason`` is the URL's per-file error and whose
``retryable`` says whether a job's retry should try it again.
"""

from visionnet.workers.fetch.fetcher import Fetcher
from visionnet.workers.fetch.outcome import Fetched, FetchError

__all__ = ["FetchError", "Fetched", "Fetcher"]
