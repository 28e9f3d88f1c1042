"""Talking to Google for the sheet and the results store: the service account, one
transport per client library (gspread on requests, googleapiclient on httplib2), and
retries of our own, bounded in time.

Retried: 429, 5xx, Google's rate-limit 403s and dropped connections, with exponential
back-off and jitter until `google.retry_s` is spent; then BackendUnavailable, which costs
one poll and nothing else. Not retried: a 403 for permissions, a 404, a refused key:
those need a person, and say which. `google.api_endpoint` (tests only) stands for both
https://sheets.googleapis.com and https://www.googleapis.com; `google.ca_bundle` is the
CA to trust for it. Credentials are read from the key file named in the config and
never appear in a message or a log.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from pipeline.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

# The narrowest scopes that work: the sheet needs to write cells; the store must create
# folders and files inside a folder (or Shared Drive) a person shared with the account,
# which drive.file (files the app created or was handed by a picker) does not reach.
SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
GOOGLE_BASES = ("https://sheets.googleapis.com", "https://www.googleapis.com")
KEY_FIELDS = ("client_email", "private_key", "token_uri")
RETRY_STATUS = {429, 500, 502, 503, 504}
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError"}

T = TypeVar("T")


@dataclass(frozen=True)
class GoogleSettings:
    credentials: Path
    api_endpoint: str | None
    ca_bundle: str | None
    retry_s: float
    timeout_s: float

    @classmethod
    def from_config(cls, config: dict) -> "GoogleSettings":
        g = config.get("google") or {}
        if not g.get("credentials"):
            raise ConfigError("google.credentials is not set: name the service account's key file.")
        endpoint = g.get("api_endpoint")
        return cls(Path(g["credentials"]), endpoint.rstrip("/") if endpoint else None, g.get("ca_bundle"),
                   float(g["retry_s"]), float(g["timeout_s"]))

    def url(self, google_url: str) -> str:
        """A Google API URL, or the same path at api_endpoint when one is set."""
        if self.api_endpoint:
            for base in GOOGLE_BASES:
                if google_url.startswith(base):
                    return self.api_endpoint + google_url[len(base):]
        return google_url


def load_credentials(settings: GoogleSettings, scopes: list[str]):
    """The service account's credentials, or a ConfigError that says what is wrong with
    the key file (never what is in it)."""
    from google.oauth2 import service_account

    path = settings.credentials
    where = f"google.credentials ({path})"
    if not path.is_file():
        raise ConfigError(f"{where}: there is no key file there; create a key for the service account "
                          "in the Google Cloud console and save it at that path.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{where}: the key file cannot be read ({e.strerror}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the key file cannot be read (it is not text).") from None
    except ValueError:
        raise ConfigError(f"{where}: the file is not a JSON key file.") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"{where}: the file is not a service-account key (its \"type\" is not "
                          "\"service_account\"); download a key of a service account, not an OAuth client.")
    missing = [k for k in KEY_FIELDS if not info.get(k)]
    if missing:
        raise ConfigError(f"{where}: the service-account key lacks {', '.join(missing)}.")
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=scopes)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: the private key in the file cannot be read; download a new key.") from None


# -- retries -----------------------------------------------------------------------------
def _status_and_reason(exc: BaseException) -> tuple[int | None, str]:
    """The HTTP status and Google's error reason of a client library's exception."""
    status, body = None, ""
    response = getattr(exc, "response", None)  # gspread's APIError, requests' HTTPError
    if response is not None and hasattr(response, "status_code"):
        status, body = response.status_code, getattr(response, "text", "")
    resp = getattr(exc, "resp", None)  # googleapiclient's HttpError
    if resp is not None and hasattr(resp, "status"):
        status = int(resp.status)
        content = getattr(exc, "content", b"")
        body = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    reason = ""
    try:
        err = json.loads(body).get("error", {})
        reasons = [e.get("reason", "") for e in err.get("errors", [])]
        reason = next((r for r in reasons if r), "") or err.get("status", "")
    except (ValueError, AttributeError):
        pass
    return status, reason


def is_transient(exc: BaseException) -> bool:
    """Worth trying again: rate limits, Google's own errors, connections that failed."""
    import requests
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, auth_exceptions.TransportError):
        return True
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)):
        return True
    # A connection cut while the client writes over TLS (the server went away mid-upload):
    # depending on timing Python reports a broken pipe (above) or a TLS end-of-file.
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True
    try:
        import httplib2

        if isinstance(exc, httplib2.HttpLib2Error) and not isinstance(exc, httplib2.RedirectLimit):
            return True
    except ImportError:  # pragma: no cover - installed with google-api-python-client
        pass
    status, reason = _status_and_reason(exc)
    if status in RETRY_STATUS:
        return True
    return status == 403 and reason in RATE_LIMIT_REASONS


def short_reason(exc: BaseException) -> str:
    status, reason = _status_and_reason(exc)
    if status:
        return f"HTTP {status}{' ' + reason if reason else ''}"
    return type(exc).__name__


def with_retries(call: Callable[[], T], settings: GoogleSettings, what: str) -> T:
    """`call()`, tried again on transient failures with exponential back-off and jitter
    until settings.retry_s is spent; then BackendUnavailable naming `what`."""
    from google.auth import exceptions as auth_exceptions

    deadline = time.monotonic() + settings.retry_s
    wait = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except auth_exceptions.RefreshError:
            raise ConfigError("google.credentials: Google refused the service account's key (deleted, disabled "
                              "or from another project); create a new key.") from None
        except Exception as e:  # noqa: BLE001 - classified below, re-raised unless transient
            if not is_transient(e):
                raise
            pause = wait * (0.5 + random.random())
            if time.monotonic() + pause > deadline:
                raise BackendUnavailable(
                    f"Google could not be reached for {what} ({short_reason(e)}, {attempt} attempt(s) "
                    f"in {settings.retry_s:g} s); it is tried again at the next poll.") from None
            log.info("%s: %s; trying again in %.1f s", what, short_reason(e), pause)
            time.sleep(pause)
            wait = min(wait * 2, 16.0)


# -- transports --------------------------------------------------------------------------
def requests_session(settings: GoogleSettings, credentials):
    """An authorised requests session (gspread's transport) that trusts ca_bundle, for
    the API calls and the token refresh alike."""
    import requests
    from google.auth.transport.requests import AuthorizedSession, Request

    plain = requests.Session()
    session = AuthorizedSession(credentials, auth_request=Request(plain))
    if settings.ca_bundle:
        # requests lets REQUESTS_CA_BUNDLE win over a session's own CA unless trust_env is off.
        for s in (plain, session):
            s.verify = settings.ca_bundle
            s.trust_env = False
    return session


def drive_service(settings: GoogleSettings, credentials):
    """A googleapiclient Drive v3 service on httplib2, from the discovery document that
    ships with the library (nothing fetched)."""
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    http = httplib2.Http(ca_certs=settings.ca_bundle, timeout=settings.timeout_s)
    # Resumable uploads answer 308 without a Location: it is "go on", not a redirect.
    http.redirect_codes = http.redirect_codes - {308}
    authed = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
    options = {"api_endpoint": settings.api_endpoint + "/drive/v3/"} if settings.api_endpoint else None
    return build("drive", "v3", http=authed, client_options=options, cache_discovery=False, static_discovery=True)
