"""Credentials in URLs, masked wherever a URL is written: messages, state files, logs, XCom.

A Base URL or a storage URI may carry a secret: ``http://user:secret@gateway`` (userinfo) or a token in
its query (``?key=...``, ``?token=...``, a signed URL's ``X-Amz-Signature``). Every place that writes a
URL writes :func:`masked_url` of it, and text that may quote one (an exception's message stored in a
state file) goes through :func:`mask_urls`. :func:`url_secrets` gives the secret parts themselves, for
Airflow's log masker.

Userinfo is a secret in an ``http(s)`` URL whatever it holds (``https://token@gateway``); in a storage
URI only with a password (``s3://key:secret@bucket``): a bare name there is the Airflow connection id
``ObjectStoragePath`` writes (``s3://aws_default@bucket/key``), shown as it is.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "***"
#: Query parameters whose value is a secret when their (lower-cased) name contains one of these.
_SECRET_NAME_PARTS = (
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "sig",
    "credential",
    "session",
    "code",
)
# A URL inside free text: a scheme, ``://``, then anything up to a space, a quote or a bracket.
_WEB_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{},]+")


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter named ``name`` carries a secret (``key``, ``api_key``, ``token``...)."""
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_NAME_PARTS)


def masked_url(url: str) -> str:
    """Return ``url`` with its userinfo and its secret query values replaced by ``***``.

    ``http://user:secret@gw:8080/p?key=abc&page=2`` → ``http://***@gw:8080/p?key=***&page=2``. Text
    that is not a URL is returned as it is.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if _secret_userinfo(parts.scheme, netloc):
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = _masked_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_urls(text: str) -> str:
    """Return ``text`` with every URL in it masked (:func:`masked_url`)."""
    return _URL_IN_TEXT.sub(lambda found: masked_url(found.group(0)), text)


def url_secrets(url: str) -> list[str]:
    """Return the secret parts of ``url`` (userinfo and its password, secret query values), as written
    and decoded: what a log masker must hide."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if _secret_userinfo(parts.scheme, parts.netloc):
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.append(userinfo)
        if ":" in userinfo:  # the password alone too; never the bare user name, a common word
            found.append(userinfo.split(":", 1)[1])
    for field in parts.query.split("&"):
        name, sep, value = field.partition("=")
        if sep and value and is_secret_parameter(unquote(name)):
            found.append(value)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if is_secret_parameter(name):
            found.append(value)
    secrets = {part for part in found + [unquote(part) for part in found] if part}
    return sorted(secrets, key=len, reverse=True)


def _secret_userinfo(scheme: str, netloc: str) -> bool:
    """Whether ``netloc`` carries a secret: any userinfo on the web, a password elsewhere."""
    if "@" not in netloc:
        return False
    return scheme.lower() in _WEB_SCHEMES or ":" in netloc.rsplit("@", 1)[0]


def _masked_query(query: str) -> str:
    if not query:
        return query
    fields = []
    for field in query.split("&"):
        name, sep, value = field.partition("=")
        secret = sep and value and is_secret_parameter(unquote(name))
        fields.append(f"{name}={MASK}" if secret else field)
    return "&".join(fields)
