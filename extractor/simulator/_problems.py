"""The one exception the simulator's data layer raises: an HTTP answer with a message.

The store and the parameter parsers know nothing about aiohttp; they raise
``ApiError(status, message)`` and the server turns it into a JSON body. Only
the statuses a client must handle appear: 400 (bad parameter or body), 404
(unknown or deleted employee).
"""

from __future__ import annotations

__all__ = ["ApiError", "bad_request", "not_found"]


class ApiError(Exception):
    """A request the API refuses, with the status and the message to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str = "Employee not found") -> ApiError:
    return ApiError(404, message)
