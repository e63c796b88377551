"""URLs and DSNs as they may be shown: in logs, errors, ``--check-config`` output.

Secrets ride in URLs more often than in config keys: an RTSP camera's ``user:password@``, a presigned URL's
query (``X-Amz-Signature=``, ``sig=``, ``token=``), and for Slack/Teams/Discord-style incoming webhooks the
path itself (``/services/T000/B000/<token>``). Every line that prints a URL or a DSN goes through here, so
the rule is written once:

- userinfo, always: ``user:password@`` -> ``user:***@``; a user with no password may itself be a token ->
  ``***@``;
- query values, always: ``?token=abc&x=1`` -> ``?token=***&x=***`` (names kept, to say what was there);
- the path, for URLs whose path is a credential (``secret_path=True``, webhooks): ``/services/T0/B0/x`` ->
  ``/***``;
- the fragment is dropped.

A string that is not a URL is returned unchanged apart from a ``user:password@`` it may hold.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

MASK = "***"
# key=value DSN fields that hold secrets (libpq's password; generic names for other drivers)
_DSN_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|sslpassword|secret|token)\s*=\s*('(?:\\.|[^'])*'|\S+)")
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact_url(url: str, *, secret_path: bool = False) -> str:
    """``url`` with its secrets masked (module docstring); never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host: mask what looks like userinfo anyway
        return _USERINFO.sub(f"{MASK}@", url)
    if not parts.scheme or not parts.netloc:
        return _USERINFO.sub(f"{MASK}@", url)
    path = parts.path
    if secret_path and path not in ("", "/"):
        path = f"/{MASK}"
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.query and not query:  # a query that is not name=value pairs: all of it
        query = MASK
    return urlunsplit(SplitResult(parts.scheme, _netloc(parts), path, query, ""))


def _netloc(parts: SplitResult) -> str:
    host = parts.netloc.rsplit("@", 1)[-1]
    if "@" not in parts.netloc:
        return host
    user = parts.username or ""
    if parts.password is None or not user:
        return f"{MASK}@{host}"
    return f"{user}:{MASK}@{host}"


def redact_dsn(dsn: str) -> str:
    """A database DSN with its secrets masked: URL form (``postgresql://u:pw@h/db?password=x``) or libpq's
    key=value form (``host=h password=x``)."""
    if "://" in dsn:
        return redact_url(dsn)
    return _DSN_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", dsn)
