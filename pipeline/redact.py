"""Credentials out of anything shown: URLs, free text holding URLs, command lines.

A password may sit in a URL's user part (``postgresql://postgres:pw@host/db``,
``redis://:pw@host``) or in its query (``redis://host/0?password=pw``). Both become ``***``;
user names, hosts and everything else stay, so the line still says which server was meant.
"""

from __future__ import annotations

import re
from typing import Sequence

MASK = "***"

#: Query parameters whose value is a secret (Redis and SQLAlchemy drivers read ``password``).
_SECRET_QUERY = re.compile(
    r"(?P<lead>(?:^|[?&;])(?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey)=)"
    r"(?P<value>[^&;#\s]*)", re.IGNORECASE)
#: The word that stands for a password in a usage hint (``redis://:password@host``), left as written.
_PLACEHOLDER = "password"
#: ``scheme://`` and the rest of the URL up to whitespace or a quote (a sentence's final
#: punctuation stays outside). The scheme starts only where a run of scheme characters starts:
#: without the lookbehind every position inside a long word was tried again (quadratic: 10 s
#: for a 100,000-character message).
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)]")


def redact_url(url: str) -> str:
    """``url`` with its password (user part or query) replaced by ``***``; never raises."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The authority ends at the first '/', '?' or '#'; its user part at the last '@' (urlsplit's rule).
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo and userinfo.split(":", 1)[1].lower() != _PLACEHOLDER:
        authority = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query_start = tail.find("?")
    if query_start >= 0:
        tail = tail[:query_start] + _SECRET_QUERY.sub(rf"\g<lead>{MASK}", tail[query_start:])
    return f"{scheme}://{authority}{tail}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url``."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the credentials of every URL argument masked."""
    return [redact_text(arg) for arg in argv]


def has_credentials(argv: Sequence[str]) -> bool:
    """Whether any argument holds a URL credential."""
    return redact_argv(argv) != list(argv)
