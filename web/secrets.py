"""Keeping secrets out of what the platform prints: URLs, log lines, error bodies.

    redact_url("postgresql://app:s3cret@db/metropole")  -> "postgresql://app:***@db/metropole"
    remember("s3cret")            # from now on scrub() and every log line hide it
    install_log_filter()          # on the root logger's handlers

Start-up lines and /version show URLs through `redact_url`; settings that
hold a secret (a store URL's password, the MQTT password, Keyrock's JWT
secret, a key's passphrase) `remember` it, so a driver's error message or a
traceback that quotes it is scrubbed before it reaches a log or a client.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
_SECRET_PARAMS = re.compile(r"pass|secret|token|key|auth|sig", re.IGNORECASE)
_known: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def remember(*secrets: str | None) -> None:
    """Hide these values wherever `scrub` runs (values of 4 characters or fewer are too common to hide)."""
    global _pattern
    with _lock:
        _known.update(s for s in secrets if s and len(s) > 4)
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_known, key=len, reverse=True))) if _known else None


def scrub(text: str) -> str:
    """`text` with every remembered secret masked."""
    pattern = _pattern
    return pattern.sub(MASK, text) if pattern is not None else text


def redact_url(url: str) -> str:
    """The URL with its password and secret-looking query parameters masked (and remembered); otherwise as given."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    out = url
    if parts.password:
        remember(parts.password)
        user_info, _, host = parts.netloc.rpartition("@")
        masked = f"{user_info.split(':', 1)[0]}:{MASK}@{host}"
        out = out.replace(parts.netloc, masked, 1)
    if parts.query:
        secrets = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAMS.search(k) and v]
        remember(*secrets)
        query = parts.query
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if value in secrets:
                query = query.replace(f"{urlencode({name: value})}", f"{urlencode({name: ''})}{MASK}")
        out = out.replace(parts.query, query, 1)
    return out


class ScrubFilter(logging.Filter):
    """Masks remembered secrets in a record's message and arguments (and its traceback text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add the scrubbing filter to every handler of `logger` (the root logger by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
