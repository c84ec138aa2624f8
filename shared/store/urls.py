"""Database URLs as people write them, turned into the form SQLAlchemy's psycopg 3 driver reads.

- `postgres://` and `postgresql://` become `postgresql+psycopg://`.
- libpq's multi-host form `postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write`
  (a primary and its standbys: libpq tries the hosts in turn and keeps the first that takes writes)
  becomes SQLAlchemy's `postgresql+psycopg://u@/db?host=h1:5432&host=h2:5432&target_session_attrs=…`;
  SQLAlchemy cannot parse a comma in the port, and hands the `host` list back to libpq as
  `host=h1,h2 port=5432,5432`.
A multi-host URL without `target_session_attrs` gets `read-write`: every process here writes, and a
standby that answers first would refuse every write.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

DRIVER = "postgresql+psycopg://"


def normalise_database_url(value: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            value = DRIVER + value[len(prefix):]
            break
    if not value.startswith(("sqlite://", DRIVER)):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    if value.startswith(DRIVER):
        value = _hosts_to_query(value)
    return value


def _hosts_to_query(url: str) -> str:
    rest = url[len(DRIVER):]
    netloc, _, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if "," not in hosts:
        return url
    path, qmark, query = tail.partition("?")
    listed = [h.strip() for h in hosts.split(",")]
    if any(not h for h in listed):
        raise ValueError("an empty host in the PostgreSQL host list")
    params = parse_qsl(query, keep_blank_values=True)
    if any(k == "host" for k, _ in params):
        raise ValueError("give the hosts either in the URL's host list or as host= parameters, not both")
    if not any(k == "target_session_attrs" for k, _ in params):
        params.append(("target_session_attrs", "read-write"))
    params = [("host", h) for h in listed] + params
    return f"{DRIVER}{userinfo}{at}/{path}?{urlencode(params, safe=':/%')}"


def describe_database_url(url: str) -> str:
    """Where the store is, without user or password (for logs): `db@h1:5432,h2:5432` or the SQLite path."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1]
    rest = url.split("://", 1)[-1]
    netloc, _, tail = rest.partition("/")
    hosts = netloc.rpartition("@")[2]
    path, _, query = tail.partition("?")
    listed = [v for k, v in parse_qsl(query) if k == "host"]
    return f"{path}@{','.join(listed) if listed else hosts}"
