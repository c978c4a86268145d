"""API keys, their kinds, and where the server reads them from.

Kinds are ordered: ``read`` < ``write`` < ``admin``. A key of a kind may call every route of its kind and
of the kinds below it. Which route needs which kind is declared on the route (see the README's table):

* none: ``GET /health`` (liveness, says only ``ok``) and ``GET /ready`` (readiness, says only whether it is);
* ``read``: recommendations, similar items, search, item lookup, ``/status`` (counts), ``/metrics``, and
  ``/docs`` + ``/openapi.json`` unless the server runs with ``--public-docs``;
* ``write``: adding and changing items, posting events, erasing users;
* ``admin``: reloading a model and retraining.

Keys come from a file (``--api-key-file``, one ``KEY:kind`` a line, ``#`` comments) or the environment
(``MOSAICREC_API_KEYS``, comma-separated): a key given on the command line is visible to every local user
in ``ps``. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Literal

from mosaicrec.errors import ConfigError
from mosaicrec.serving.limits import Bucket, FailureThrottle

KeyKind = Literal["read", "write", "admin"]
RANK: dict[str, int] = {"read": 0, "write": 1, "admin": 2}
ENV = "MOSAICREC_API_KEYS"


def parse_keys(specs: list[str], where: str) -> dict[str, KeyKind]:
    """``KEY:kind`` entries → key → kind; a bad entry is an error naming where it came from (never the key)."""
    keys: dict[str, KeyKind] = {}
    for n, spec in enumerate(specs, start=1):
        key, _, kind = spec.strip().rpartition(":")
        if not key or kind not in RANK:
            raise ConfigError(f"{where}, entry {n}: expected KEY:read, KEY:write or KEY:admin")
        if len(key) < 8:
            raise ConfigError(f"{where}, entry {n}: a key must have at least 8 characters")
        keys[key] = kind  # type: ignore[assignment]
    return keys


def load_keys(key_file: str | Path | None = None, cli_keys: list[str] | None = None) -> dict[str, KeyKind]:
    """Keys from ``key_file``, ``$MOSAICREC_API_KEYS`` and (discouraged) the command line, merged."""
    keys: dict[str, KeyKind] = {}
    if key_file is not None:
        path = Path(key_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"cannot read the API key file {path}: {e.strerror}") from None
        keys |= parse_keys([ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")], str(path))
    if os.environ.get(ENV):
        keys |= parse_keys([k for k in os.environ[ENV].split(",") if k.strip()], f"${ENV}")
    if cli_keys:
        keys |= parse_keys(cli_keys, "--api-key")
    return keys


class KeyRing:
    """Looks up a presented key in constant time, rate-limits each key with a token bucket charged by
    cost, and throttles wrong keys per client address (:mod:`mosaicrec.serving.limits`)."""

    def __init__(self, keys: dict[str, KeyKind], rate: float, burst: float) -> None:
        if not keys:
            raise ConfigError("serving needs at least one API key")
        self._keys = [(k.encode(), kind) for k, kind in keys.items()]
        self._buckets = {k: Bucket(rate, burst) for k in keys}
        self.failures = FailureThrottle()

    def kind_of(self, presented: str | None) -> tuple[str, KeyKind] | None:
        if not presented:
            return None
        given = presented.encode()
        found = None
        for key, kind in self._keys:  # compare against every key: the time says nothing about which matched
            if hmac.compare_digest(key, given):
                found = (key.decode(), kind)
        return found

    def take(self, key: str, cost: float = 1.0) -> float:
        """Charge the key ``cost``; 0 when admitted, else the seconds until it would be."""
        return self._buckets[key].take(cost)
