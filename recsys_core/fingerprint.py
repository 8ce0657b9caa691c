"""Content hashes of JSON-like values: equal values, equal hashes, on every machine and run."""

from __future__ import annotations

import hashlib
import json


def json_sha256(value) -> str:
    """sha256 (hex) of `value` as canonical JSON (sorted keys; non-JSON values by `str`)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
