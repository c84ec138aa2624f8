"""Reviewer passwords for the console: PBKDF2-SHA256 hashes, `pbkdf2_sha256$<iterations>$<salt>$<hash>`."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 200_000


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str | None) -> bool:
    """Constant-time check; False for a missing or malformed hash (never an exception)."""
    try:
        scheme, iterations, salt, _digest = (encoded or "").split("$", 3)
        if scheme != "pbkdf2_sha256":
            return False
        expected = hash_password(password, iterations=int(iterations), salt=salt)
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode(), (encoded or "").encode())
