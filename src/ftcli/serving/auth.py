"""The API key: with one set, every API request needs `Authorization: Bearer KEY` (401 otherwise).
Compared in constant time (`hmac.compare_digest`), so response timing tells nothing about the key."""

from __future__ import annotations

import hmac
import os

from ftcli.serving.api_errors import ApiError

ENV_KEY = "FTCLI_API_KEY"


def api_key_from(option: str | None) -> str | None:
    """The key from --api-key, else from FTCLI_API_KEY; None: no key needed."""
    key = option if option is not None else os.environ.get(ENV_KEY)
    return key or None


def check_key(expected: str | None, authorization: str | None) -> None:
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
    if not ok:
        raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                       type="authentication_error", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
