"""The ``claude_batch`` connection's settings, read once and checked.

The connection (type ``claude_batch``):

- **API key** (password): the key; Airflow masks it in logs, and the hook masks it again.
- **Base URL** (host): empty for ``https://api.anthropic.com``, or a gateway / emulator URL. It is
  accepted as users paste it, with or without a scheme (``https`` is assumed, ``http`` for
  ``localhost`` and loopback addresses), with or without a trailing ``/`` or ``/v1``; a port set in
  the connection's port field is added when the host has none.
- **Extras**: ``anthropic_version`` (default ``2023-06-01``), ``anthropic_beta`` (comma-separated
  flags sent as the ``anthropic-beta`` header), ``workspace_id`` (sent as the ``anthropic-workspace-id``
  header on every call), ``timeout`` (seconds per request, default 600) and ``max_retries`` (retries of
  reads on 429 / 5xx / 529 / connection errors, default 5).

The connection form (the fields above, their labels and the hidden ones) is declared once, in the
provider info (``airflow_claude_batch.get_provider_info``); :func:`ui_field_behaviour` and
:func:`form_widgets` give it to the hook in the shapes Airflow asks for.

A misconfigured connection is one ``ConnectionConfigError`` that names the connection and what to fix.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import anthropic
import httpx

from airflow_claude_batch import CONNECTION_TYPE, LEGACY_CONNECTION_TYPE, get_provider_info
from airflow_claude_batch.compat import connection_form_widgets
from airflow_claude_batch.core.api import ANTHROPIC_VERSION
from airflow_claude_batch.core.run import masked_url, url_secrets
from airflow_claude_batch.exceptions import ConnectionConfigError

T = TypeVar("T")

FIRST_PARTY_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_RETRIES = 5
CONNECT_TIMEOUT_SECONDS = 10.0
WORKSPACE_HEADER = "anthropic-workspace-id"
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class ClaudeSettings:
    """Everything the clients are built from, read once from the connection.

    :param conn_id: the Airflow connection id, for messages.
    :param base_url: the API root, normalised (scheme, host, optional path prefix; no ``/v1``); it may
        carry credentials (a gateway's ``user:password@``), so it is never written: messages, logs and
        XCom show :attr:`shown_base_url`.
    :param api_key: the key (never shown in ``repr``).
    :param anthropic_version: the ``anthropic-version`` header.
    :param betas: flags for the ``anthropic-beta`` header.
    :param workspace_id: the ``anthropic-workspace-id`` header, or ``None`` to send none.
    :param timeout: seconds per request.
    :param max_retries: retries of reads.
    """

    conn_id: str
    base_url: str = field(repr=False)
    api_key: str = field(repr=False)
    anthropic_version: str = ANTHROPIC_VERSION
    betas: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = DEFAULT_MAX_RETRIES
    workspace_id: str | None = None

    @property
    def shown_base_url(self) -> str:
        """The Base URL as written anywhere: its credentials masked (``http://***@gateway``)."""
        return masked_url(self.base_url)

    @property
    def secrets(self) -> list[str]:
        """What must never be written: the key and the Base URL's credentials."""
        return [self.api_key, *url_secrets(self.base_url)]

    @property
    def client_base_url(self) -> str:
        """The Base URL the clients call: without its credentials, which go in a header instead.

        A URL with ``user:password@`` would be written whole by the HTTP libraries' own log lines;
        the credentials are sent as HTTP Basic authorization (what ``httpx`` would do with them), to
        the Base URL's origin only.
        """
        parts = urlsplit(self.base_url)
        if "@" not in parts.netloc:
            return self.base_url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))

    @property
    def extra_headers(self) -> dict[str, str]:
        """The headers every client sends (the SDK clients as default headers, the stream client copies
        them), so that no call goes without them."""
        headers = {"anthropic-version": self.anthropic_version}
        if self.betas:
            headers["anthropic-beta"] = ",".join(self.betas)
        parts = urlsplit(self.base_url)
        if "@" in parts.netloc:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        if self.workspace_id:
            headers[WORKSPACE_HEADER] = self.workspace_id
        return headers

    @property
    def client_timeout(self) -> anthropic.Timeout:
        return anthropic.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_SECONDS))

    @property
    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_SECONDS))


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """Return the API root from a connection's host as users paste it.

    ``""`` → ``https://api.anthropic.com``; ``gw.example.com/anthropic/v1/`` →
    ``https://gw.example.com/anthropic``; ``localhost:8765`` → ``http://localhost:8765``.
    """
    text = (host or "").strip()
    if not text:
        return FIRST_PARTY_BASE_URL
    if "://" not in text:
        text = f"{'http' if _is_loopback(text) else 'https'}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{host!r} is not an http(s) URL")
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{netloc}{path}"


def _is_loopback(text: str) -> bool:
    hostname = urlsplit(f"//{text}").hostname or ""
    if hostname in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def missing_connection(conn_id: str) -> ConnectionConfigError:
    """The error for a Claude connection that is not defined: which one, and the ways to add it."""
    return ConnectionConfigError(
        f"connection {conn_id!r} is not defined, so nothing can reach the API. Add it before the run, in "
        f"the UI (Admin > Connections, type Claude Message Batches), with `airflow connections add "
        f"{conn_id} --conn-type {CONNECTION_TYPE} --conn-password <API key>`, or as the environment "
        f"variable AIRFLOW_CONN_{conn_id.upper()} of every scheduler, worker and triggerer "
        "(docs/connection.md); or pass conn_id= naming the connection you have"
    )


def settings_from_connection(conn: Any) -> ClaudeSettings:
    """Read :class:`ClaudeSettings` from an Airflow connection; ``ConnectionConfigError`` says what to fix."""
    conn_id = conn.conn_id
    if not conn.password:
        raise ConnectionConfigError(
            f"connection {conn_id!r} has no API key: set the key in its password (API key) field"
        )
    extra = conn.extra_dejson or {}

    def option(name: str) -> Any:
        value = extra.get(name)
        for conn_type in (CONNECTION_TYPE, LEGACY_CONNECTION_TYPE):  # the form's prefixed keys
            value = extra.get(f"extra__{conn_type}__{name}") if value is None else value
        return None if value in ("", None) else value

    try:
        base_url = normalize_base_url(conn.host, conn.port)
    except ValueError as exc:
        raise ConnectionConfigError(
            f"connection {conn_id!r} has an invalid Base URL: {exc}; set the host to the API root, "
            f"e.g. {FIRST_PARTY_BASE_URL} (or leave it empty for the first-party API)"
        ) from None
    betas = option("anthropic_beta") or ()
    if isinstance(betas, str):
        betas = betas.split(",")
    return ClaudeSettings(
        conn_id=conn_id,
        base_url=base_url,
        api_key=conn.password,
        anthropic_version=str(option("anthropic_version") or ANTHROPIC_VERSION),
        betas=tuple(flag.strip() for flag in betas if str(flag).strip()),
        timeout=_number(option("timeout"), DEFAULT_TIMEOUT_SECONDS, "timeout", conn_id, float, 0.001),
        max_retries=_number(option("max_retries"), DEFAULT_MAX_RETRIES, "max_retries", conn_id, int, 0),
        workspace_id=_workspace_id(option("workspace_id"), conn_id),
    )


def _workspace_id(value: Any, conn_id: str) -> str | None:
    """The ``workspace_id`` extra: one header value (no spaces or line breaks), or ``None``."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or any(char.isspace() for char in text) or not text.isprintable():
        raise ConnectionConfigError(
            f"connection {conn_id!r}: extra 'workspace_id' must be a workspace id such as "
            f"'wrkspc_01...', got {value!r}; fix it in the connection's extra fields (or leave it empty)"
        )
    return text


def _number(value: Any, default: T, name: str, conn_id: str, kind: Callable[[Any], T], low: float) -> T:
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < low:  # type: ignore[operator]
        raise ConnectionConfigError(
            f"connection {conn_id!r}: extra {name!r} must be a number >= {low:g}, got {value!r}; fix it "
            "in the connection's extra fields"
        )
    return number


def _declared_connection_type() -> dict[str, Any]:
    return next(
        entry
        for entry in get_provider_info()["connection-types"]
        if entry["connection-type"] == CONNECTION_TYPE
    )


def ui_field_behaviour() -> dict[str, Any]:
    """Return the connection form's behaviour as the provider info declares it, with the hook method's
    key spelling (``hidden_fields``, not ``hidden-fields``)."""
    declared = _declared_connection_type()["ui-field-behaviour"]
    return {key.replace("-", "_"): value for key, value in declared.items()}


def form_widgets() -> dict[str, Any]:
    """Return the extra fields the provider info declares (``conn-fields``) as form widgets.

    Airflow 3.2 and later build the form from the provider info and never ask for them; Airflow 3.1
    renders these widgets.
    """
    return connection_form_widgets(_declared_connection_type()["conn-fields"])
