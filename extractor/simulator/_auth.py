"""OAuth client credentials plus the tenant API key, as UKG Pro checks them.

``POST /authentication/v1/token`` trades a service account's client id and
secret for an opaque bearer token that expires after ``token_lifetime`` seconds;
an account may hold several valid tokens at once. Every other call must carry
both ``Authorization: Bearer <token>`` and ``US-API-Key: <that account's key>``.
Whatever is missing or wrong, the caller learns nothing more than "unauthorized":
``authenticate`` returns None for every failure alike.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

from ._config import ServiceAccount

__all__ = ["Authenticator"]

_PURGE_ABOVE = 1024  # tokens kept before expired ones are swept on the next issue


def _same(given: str, expected: str) -> bool:
    # compare_digest wants bytes for non-ASCII text; header values may be anything.
    return secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


class Authenticator:
    """Issues and checks tokens for the accounts in ``accounts`` (a live mapping)."""

    def __init__(
        self,
        accounts: Mapping[str, ServiceAccount],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expiry)

    def account(self, client_id: str) -> ServiceAccount | None:
        return self._accounts.get(client_id)

    def check_client(self, client_id: str, client_secret: str) -> ServiceAccount | None:
        """The account whose id and secret these are, or None."""
        account = self._accounts.get(client_id)
        if account is None or not _same(client_secret, account.client_secret):
            return None
        return account

    def issue(self, account: ServiceAccount, lifetime: float) -> str:
        """A new bearer token for ``account``, valid for ``lifetime`` seconds."""
        now = self._clock()
        if len(self._tokens) > _PURGE_ABOVE:
            self._tokens = {t: e for t, e in self._tokens.items() if e[1] > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (account.client_id, now + lifetime)
        return token

    def authenticate(self, headers: Mapping[str, str]) -> ServiceAccount | None:
        """The account of a request with a live token and its account's API key, else None."""
        authorization = headers.get("Authorization")
        api_key = headers.get("US-API-Key")
        if not authorization or not api_key:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        entry = self._tokens.get(token.strip())
        if entry is None:
            return None
        client_id, expires = entry
        if self._clock() >= expires:
            del self._tokens[token.strip()]
            return None
        account = self._accounts.get(client_id)
        if account is None or not _same(api_key, account.api_key):
            return None
        return account
