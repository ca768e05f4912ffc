"""Every error leaves the API as JSON ``{error, message}`` with the right status."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def error_response(status: int, error: str, message: str) -> ResponseReturnValue:
    return jsonify(error=error, message=message), status


def describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validation_error_response(exc: ValidationError) -> Any:
    """flask-openapi3's hook: a response for requests its models reject."""
    response = jsonify(error="bad_request", message=describe_validation(exc))
    response.status_code = 400
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> ResponseReturnValue:
        return error_response(exc.status, exc.error, exc.message)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> ResponseReturnValue:
        return error_response(400, "bad_request", describe_validation(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        if exc.response is not None and exc.response.is_json:
            return exc.response
        name = (exc.name or "error").lower().replace(" ", "_")
        response = jsonify(error=name, message=exc.description or name)
        response.status_code = exc.code or 500
        # Keep the exception's own headers (405 carries Allow).
        for header, value in exc.get_headers():
            if header.lower() != "content-type":
                response.headers[header] = value
        return response

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(OperationalError)
    def _broker_down(exc: Exception) -> ResponseReturnValue:
        log.warning("broker unavailable: %s", exc)
        return error_response(503, "unavailable", "Broker or result backend unavailable.")
