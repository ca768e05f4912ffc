"""What the model workers have loaded, kept in Redis for the web, which never loads a model.

A model worker records a model's description (name, type, whether it is
flip-invariant, whether it can embed text) when it loads it; the API serves
these (``GET /api/v1/models``) so the page knows, for instance, whether to
offer text-to-image search. Each record names the model, so a worker restarted
on another model replaces it.
"""

from __future__ import annotations

import json
from typing import Any

KEY = "visionnet:models"


class LoadedModels:
    def __init__(self, client: Any) -> None:
        self._r = client  # decode_responses=True

    def publish(self, kind: str, info: dict[str, Any]) -> None:
        self._r.hset(KEY, kind, json.dumps(info))

    def get(self, kind: str) -> dict[str, Any] | None:
        raw: str | None = self._r.hget(KEY, kind)
        return json.loads(raw) if raw else None
