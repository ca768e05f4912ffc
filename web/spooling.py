"""Where large multipart parts are spooled: the data directory, not the system's temp dir.

Werkzeug writes a file part of a request over 500 KB to an anonymous file in
``/tmp``. An archive upload was then copied from there into the data directory
for the worker to unpack: every byte written twice, and ``/tmp`` (often small,
often memory) had to hold the whole archive. Here such parts go to named files
in ``<data>/incoming``, on the disk that keeps them, so an archive is moved into
place (``save_archive_upload``), written once. What a request leaves there is
removed when it ends; a web process killed mid-request leaves files that the
next archive upload sweeps after ``result_ttl_s``.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import IO

from flask import Request, current_app

from visionnet.config.settings import Settings
from visionnet.web.services import EXTENSION_KEY

# Werkzeug's own threshold: smaller requests' parts stay in memory.
IN_MEMORY_MAX = 500 * 1024


def incoming_path(settings: Settings) -> Path:
    return settings.data_path / "incoming"


class SpoolingRequest(Request):
    """A Flask request whose large file parts are named files under ``<data>/incoming``."""

    spooled: list[str]

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if total_content_length is not None and total_content_length <= IN_MEMORY_MAX:
            return io.BytesIO()
        folder = incoming_path(current_app.extensions[EXTENSION_KEY].settings)
        folder.mkdir(parents=True, exist_ok=True)
        part = tempfile.NamedTemporaryFile(dir=folder, prefix="part-", delete=False)  # noqa: SIM115
        if not hasattr(self, "spooled"):
            self.spooled = []
        self.spooled.append(part.name)
        return part


def remove_spooled(request: Request) -> None:
    """At the end of a request: its spooled parts that were not moved away go."""
    for name in getattr(request, "spooled", []):
        Path(name).unlink(missing_ok=True)
