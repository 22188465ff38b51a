"""USMAN over HTTP: SSO user ids by email within a company (implements ``ports.SsoDirectory``).

Wire contract (see docs/usman.md)::

    POST {base_url}{path}
    {auth_header}: {auth_scheme} {token}                          (no header without a token)
    {"company_sso_id": "...", "emails": ["a@x.example", ...]}      at most max_emails_per_request

    200 {"data": [{"email": "a@x.example", "sso_id": "..."}, ...]}  users not found are absent

Emails are matched as USMAN stores them, ignoring the case of ASCII letters only (``A``–``Z``):
never ``str.casefold``/``lower``, which would make ``straße@`` and ``strasse@``, or a Kelvin sign
``K`` and ``k``, one user and send history to the wrong person. The result is keyed by the caller's
spellings.

Two kinds of failure, told apart because they call for opposite actions:

* **an outage** (retries exhausted on timeouts, transport errors, 429 and 5xx; a body of the wrong
  shape) raises ``UsmanUnavailable``, a ``DirectoryUnavailable``: the ActorResolver degrades those
  actors to "[Deleted CRM User]" and never drops a record (the run counts them, and halts past a
  threshold);
* **a refusal** — 401, 403, or any other 4xx but 408 and 429, any redirect (3xx: redirects are never
  followed, so a redirect is never an answer), any 2xx but 200 (the lookup's only answer), a 200
  HTML page (``Content-Type: text/html``: a sign-in or proxy page, served again on every retry), and
  a TLS certificate that cannot be verified — is a configuration error (a wrong token, path, permission,
  base URL or CA): ``UsmanRefused``, a ``DirectoryRefused``, stops the run before it writes anything (exit 3).

A 400 or 422 may answer the request's *content* instead: one email USMAN's validator refuses
(legacy CRM data such as ``n/a``) would otherwise stop every run of the account for ever. So a
chunk refused with 400/422 is halved until each email refused stands alone; those emails are
answered as unknown (USMAN holds no user by them: the actor is ``[Deleted CRM User]``) and the
rest as USMAN answers them. Only when every email of the chunk is refused, and a probe is refused
too (an email of the company USMAN took before in this process or in the same call, then
``PROBE_EMAIL``), is it the request itself that is refused: ``UsmanRefused`` — unless no refused
email is an address at all (``n/a``), which no probe's answer makes a configuration error.

The token never appears in a repr, log line or message.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import os
import random as _random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Final

from crm_audit_transform.errors import DirectoryRefused, DirectoryUnavailable

from .retrying import RetryPolicy, attempts_made
from .usman_answers import ANSWER_BASE_BYTES as ANSWER_BASE_BYTES
from .usman_answers import ANSWER_BYTES_PER_EMAIL as ANSWER_BYTES_PER_EMAIL
from .usman_answers import answer_bytes as answer_bytes
from .usman_answers import email_key, is_address, sso_ids_in_answer
from .usman_config import USMAN_MAXIMA as USMAN_MAXIMA
from .usman_config import UnusableUsmanSetting, UsmanConfig

if TYPE_CHECKING:
    import ssl

    import httpx  # imported by the client itself: the settings read UsmanConfig without it

__all__ = [
    "UnusableUsmanSetting",
    "UsmanClient",
    "UsmanConfig",
    "UsmanRefused",
    "UsmanUnavailable",
    "email_key",
]

# Answers a retry can change: a request timeout and rate limiting. Every other 4xx is a refusal.
_RETRYABLE_4XX = frozenset({408, 429})
# Refusals that may be about one email of the chunk rather than about the request (see above).
_CONTENT_REFUSALS = frozenset({400, 422})
ANSWER_READS: Final = 3
"""An attempt's answer — status line, headers and body — must be whole within ``connect_timeout +
ANSWER_READS × read_timeout`` (17 s by default): ``read_timeout`` bounds each read, so a server that
sends a byte now and then would otherwise hold the run for hours. Each socket read gets only the
time left (``usman_transport``); past it the attempt is a timeout, retried."""
PROBE_EMAIL: Final = "crm-audit-probe@example.invalid"
"""Asked alone when USMAN refuses every email of a chunk and took no email of the company before: a
well-formed address no user has (``.invalid`` is reserved, RFC 2606), which a strict validator may
refuse too (``_probe``)."""


log = logging.getLogger(__name__)


class _EndpointsHidden(logging.Filter):
    """On httpx's logger: a USMAN request's URL in a record (httpx logs every request's, whole, at
    INFO: ``HTTP Request: POST https://…?api_key=… "HTTP/1.1 200 OK"``) shown as the client names
    its endpoint, without user info or query. Only the URLs of USMAN clients are touched: a host
    application's other requests are logged as it logs them."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: dict[str, str] = {}  # a client's request URL, whole -> as its messages name it

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if self.shown and isinstance(args, tuple) and any(str(a) in self.shown for a in args):
            record.args = tuple(self.shown.get(str(a), a) for a in args)
        return True


_HIDDEN: Final = _EndpointsHidden()


def _hide_in_httpx_log(url: str, shown: str) -> None:
    """Log ``url`` as ``shown`` on httpx's logger from now on (the filter is added once a process)."""
    if url == shown:
        return
    _HIDDEN.shown[url] = shown
    httpx_log = logging.getLogger("httpx")
    if _HIDDEN not in httpx_log.filters:
        httpx_log.addFilter(_HIDDEN)


def _verifying_context() -> ssl.SSLContext:
    """The TLS context a client verifies USMAN's certificate with: httpx's own default (the CA file
    ``SSL_CERT_FILE`` or directory ``SSL_CERT_DIR`` names, else certifi's bundle), one per process
    and CA location. Building it parses the whole CA bundle (tens of milliseconds), which httpx did
    for every client: once per job, worker task and ``--workers`` process."""
    return _context_for(os.environ.get("SSL_CERT_FILE") or "", os.environ.get("SSL_CERT_DIR") or "")


@functools.lru_cache(maxsize=4)
def _context_for(cert_file: str, cert_dir: str) -> ssl.SSLContext:
    # The arguments key the cache only: httpx reads the same variables. Sharing a context between
    # clients and threads is safe: ``ssl`` locks it, and httpcore only sets the ALPN protocols on
    # it, the same ones (HTTP/1.1) for every client here.
    del cert_file, cert_dir
    from httpx import create_ssl_context

    return create_ssl_context(verify=True, trust_env=True)


_Answer = tuple[dict[str, str], frozenset[str]]
"""A chunk's answer: SSO ids by ``email_key``, and the keys whose entry is no answer."""


class UsmanUnavailable(DirectoryUnavailable):
    """USMAN gave no usable answer; ``status_code`` is the last HTTP status seen, if any.
    ``answered`` / ``unanswered``: an answer that is no answer for some emails only
    (``DirectoryUnavailable``)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        attempts: int = 0,
        answered: Mapping[str, str] | None = None,
        unanswered: Collection[str] | None = None,
    ) -> None:
        super().__init__(message, answered=answered, unanswered=unanswered)
        self.status_code = status_code
        self.attempts = attempts


class UsmanRefused(DirectoryRefused):
    """USMAN refused the request itself (401, 403, another non-retryable 4xx), answered a redirect (any
    3xx: never followed), a 2xx that is not 200 (the lookup answers 200 only) or a 200 HTML page, or
    presented a certificate that cannot be verified: fix the configuration."""


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; ``delay`` is a server-requested wait, if any."""

    safe_to_log = True  # its messages are ours: a status code or an exception's type name

    def __init__(self, message: str, status_code: int | None = None, delay: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.delay = delay


class UsmanClient:
    """A pooled, retrying USMAN client; one per process or job, closed with ``close()`` or ``with``.

    ``transport`` replaces httpx's network transport (an ``httpx.MockTransport`` in unit tests);
    ``sleep`` and ``random`` make the backoff deterministic in tests.
    """

    def __init__(
        self,
        config: UsmanConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        import httpx

        from .usman_transport import ACCEPT_ENCODING, bound_by_deadline

        self._config = config
        self._sleep = sleep
        self._random = random
        # Messages and the repr name the endpoint without the userinfo or query a URL may carry
        # (``?api_key=…``): they reach logs no runner scrubs, such as a Celery worker's task failure.
        endpoint = httpx.URL(config.base_url.rstrip("/") + config.path)
        hidden = "?***" if endpoint.query or endpoint.fragment else ""
        self._where = str(endpoint.copy_with(userinfo=b"", query=None, fragment=None)) + hidden
        self._http = httpx.Client(
            base_url=config.base_url,
            transport=transport,
            verify=_verifying_context(),
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.read_timeout,
                pool=config.connect_timeout,
            ),
            limits=httpx.Limits(max_connections=config.max_connections),
            headers={"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING},
            follow_redirects=False,
        )
        _hide_in_httpx_log(str(self._http.build_request("POST", config.path).url), self._where)
        # Every socket read ends by the attempt's deadline, the headers' too (usman_transport); with
        # another httpx layout each read is still bounded by read_timeout, not the whole answer.
        if transport is None and not bound_by_deadline(self._http):
            log.warning(
                "USMAN answer deadline not applied to headers (httpx %s keeps its connection "
                "pools elsewhere): a server dripping its headers is bounded per read only",
                httpx.__version__,
            )
        self._answer_seconds = config.connect_timeout + ANSWER_READS * config.read_timeout
        self._accepted: dict[str, str] = {}  # per company, an email of a request USMAN answered
        self._sendable = transport is None and sleep is time.sleep and random is _random.random

    def __repr__(self) -> str:
        return f"UsmanClient({self._where!r})"

    def worker_copy(self) -> UsmanClient | None:
        """This client for a page pool's worker process (``ports.WorkerCopy``): it pickles as its
        config alone (the token crosses only the pipe to the run's own worker, never a repr), and
        the copy opens its own connections; None with an injected transport, sleep or random."""
        return self if self._sendable else None

    def __getstate__(self) -> UsmanConfig:
        if not self._sendable:
            raise TypeError("a UsmanClient with an injected transport cannot be sent to another process")
        return self._config

    def __setstate__(self, config: UsmanConfig) -> None:
        self.__init__(config)  # type: ignore[misc]  # a new client, with its own connections

    def __enter__(self) -> UsmanClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        """SSO ids of the users with these emails in the company; unknown emails are absent.

        Emails are sent once per spelling up to ASCII case (``email_key``), in chunks of
        ``max_emails_per_request``, the whole call within ``call_timeout`` (``usman_config.LEASE_SHARE``).
        Each chunk's answer stands on its own: ``UsmanUnavailable`` when some emails are unanswered —
        a chunk USMAN gave no usable answer to (its retries or the call's time ran out, a body of the
        wrong shape), a chunk never asked once the time ran out, an entry whose ``sso_id`` is no id
        (``usman_answers.sso_ids_in_answer``) — with ``unanswered`` holding those emails (as the caller
        spelt them) and ``answered`` the other emails' ids, so only those actors degrade; when no chunk
        was answered at all, the first failure as it was (``unanswered`` None: every email).
        ``UsmanRefused`` when USMAN refuses us, at once.
        """
        deadline = time.monotonic() + self._config.call_timeout
        spellings: dict[str, list[str]] = {}
        for email in emails:
            if email:
                spellings.setdefault(email_key(email), []).append(email)
        found: dict[str, str] = {}
        bad: set[str] = set()  # entries that are no answer
        missed: list[str] = []  # keys of the chunks left unanswered
        missed_chunks = 0
        failure: UsmanUnavailable | None = None
        chunks = list(self._chunks(sorted(spellings)))
        # Chunks USMAN refused whole (400/422), probed once every other chunk is asked: an email of
        # this call USMAN took then vouches for the request, whatever this process asked before.
        unvouched: list[tuple[list[str], list[str]]] = []
        for chunk in chunks:
            if time.monotonic() >= deadline:
                failure = failure or self._out_of_time()
                missed.extend(chunk)
                missed_chunks += 1
                continue
            wire = [spellings[key][0] for key in chunk]
            try:
                answered, unanswered, refused = self._ask_isolating(company_sso_id, wire, deadline)
            except UsmanUnavailable as exc:
                # This chunk's emails only: the others' answers are USMAN's, each chunk asked alone.
                failure = failure or exc
                missed.extend(chunk)
                missed_chunks += 1
                continue
            if refused:
                unvouched.append((chunk, refused))
            bad.update(key for key in unanswered if key in spellings)
            for key, sso_id in answered.items():
                for email in spellings.get(key, ()):
                    found[email] = sso_id
        for chunk, refused in unvouched:
            try:
                if time.monotonic() >= deadline:
                    raise self._out_of_time()
                self._probe(company_sso_id, refused, deadline)
            except UsmanUnavailable as exc:
                failure = failure or exc  # the probe went unanswered: those emails are, too
                missed.extend(chunk)
                missed_chunks += 1
            else:
                log.warning(
                    "USMAN refused all %d emails of a request (HTTP 400/422) and took a probe; they "
                    "are answered as unknown users",
                    len(refused),
                )
        if failure is not None and len(missed) == len(spellings):
            raise failure  # no chunk answered: the outage as it was, every email unanswered
        if failure is not None:
            log.warning(
                "USMAN gave no answer for %d of %d emails (%d of %d requests); their actors are "
                "degraded, the other answers kept",
                len(missed),
                len(spellings),
                missed_chunks,
                len(chunks),
            )
            raise UsmanUnavailable(
                f"{failure} — {len(missed)} of {len(spellings)} email(s) unanswered, the rest answered",
                status_code=failure.status_code,
                attempts=failure.attempts,
                answered=found,
                unanswered=[email for key in sorted({*missed, *bad}) for email in spellings[key]],
            ) from failure
        if bad:
            log.warning(
                "USMAN answered %d of %d emails with an sso_id that is no SSO id; their actors are "
                "degraded, the other answers kept",
                len(bad),
                len(spellings),
            )
            raise UsmanUnavailable(
                f"USMAN at {self._where} answered {len(bad)} of {len(spellings)} email(s) with an sso_id "
                "that is no SSO id (not a non-empty string, too long, or holding a control character)",
                status_code=200,
                attempts=1,
                answered=found,
                unanswered=[email for key in sorted(bad) for email in spellings[key]],
            )
        return found

    def _out_of_time(self) -> UsmanUnavailable:
        return UsmanUnavailable(
            f"USMAN at {self._where} gave no answer within the lookup's {self._config.call_timeout:g} s "
            "(CRM_AUDIT_USMAN_CALL_TIMEOUT, at most half the lease)"
        )

    def _chunks(self, keys: list[str]) -> Iterator[list[str]]:
        size = self._config.max_emails_per_request
        for start in range(0, len(keys), size):
            yield keys[start : start + size]

    def _ask_isolating(
        self, company_sso_id: str, emails: list[str], deadline: float
    ) -> tuple[dict[str, str], frozenset[str], list[str]]:
        """``_ask``, the emails USMAN refuses (400/422) set apart as unknown (the module docstring),
        and, when it refused every one, those emails: for the caller to ``_probe`` (else ``[]``)."""
        try:
            return (*self._ask(company_sso_id, emails, deadline), [])
        except UsmanRefused as exc:
            if exc.status_code not in _CONTENT_REFUSALS:
                raise
            status = exc.status_code
        refused: list[str] = []
        unanswered: set[str] = set()
        found = self._halves(company_sso_id, emails, refused, unanswered, deadline)
        if len(refused) == len(emails):
            return found, frozenset(unanswered), refused  # logged once a probe vouches for the request
        if refused:
            log.warning(
                "USMAN refused %d of %d emails with HTTP %s; they are answered as unknown users",
                len(refused),
                len(emails),
                status,
            )
        return found, frozenset(unanswered), []

    def _probe(self, company_sso_id: str, refused: list[str], deadline: float) -> None:
        """USMAN refused every email of a chunk (400/422): returns when the emails are what it refused,
        raises ``UsmanRefused`` when it is the request.

        Asked alone: an email of this company USMAN took in an answered request before (in this
        process: the call's other chunks are asked first, so one it took in the same call counts),
        then ``PROBE_EMAIL``. One answered, the request is sound and the emails are refused. A validator
        may refuse ``PROBE_EMAIL``'s reserved domain (``.invalid``) as it refuses ``n/a``: so when every
        probe is refused too, emails that are no address at all (nothing before or after an ``@``) are
        still the emails' fault, never a reason to stop the account's runs.
        """
        known = self._accepted.get(company_sso_id)
        refusal: UsmanRefused | None = None
        for probe in ([known] if known else []) + [PROBE_EMAIL]:
            try:
                self._ask(company_sso_id, [probe], deadline)
            except UsmanRefused as exc:
                if exc.status_code not in _CONTENT_REFUSALS:
                    raise
                refusal = exc
            else:
                return
        assert refusal is not None  # every probe was refused
        if any(is_address(email) for email in refused):
            raise refusal

    def _halves(
        self,
        company_sso_id: str,
        emails: list[str],
        refused: list[str],
        unanswered: set[str],
        deadline: float,
    ) -> dict[str, str]:
        """The answers for ``emails`` (a chunk USMAN refused), asked in halves until each email it
        refuses is alone; those are added to ``refused``, the keys of entries that are no answer to
        ``unanswered``."""
        if len(emails) == 1:
            refused.append(emails[0])
            return {}
        middle = len(emails) // 2
        found: dict[str, str] = {}
        for part in (emails[:middle], emails[middle:]):
            try:
                answered, bad = self._ask(company_sso_id, part, deadline)
            except UsmanRefused as exc:
                if exc.status_code not in _CONTENT_REFUSALS:
                    raise
                found.update(self._halves(company_sso_id, part, refused, unanswered, deadline))
            else:
                found.update(answered)
                unanswered.update(bad)
        return found

    def _ask(self, company_sso_id: str, emails: list[str], deadline: float) -> _Answer:
        """One chunk, with retries until ``deadline`` (the call's, monotonic s): ``email_key`` → sso id,
        and the keys of entries that are no answer."""
        config = self._config
        policy = RetryPolicy(
            attempts=config.max_attempts,
            base_delay_s=config.backoff_base,
            max_delay_s=config.backoff_max,
            sleep=self._sleep,
            random=self._random,
        )
        attempts = policy.attempts_of(
            "usman", retry_if=_is_retryable, wait_hint=self._retry_after, deadline=deadline
        )
        made = 0
        try:
            for attempt in attempts:
                with attempt:
                    made += 1
                    return self._attempt(company_sso_id, emails, deadline)
        except _Retryable as failure:
            within = (
                ""
                if made == config.max_attempts
                else f" within the lookup's {config.call_timeout:g} s (CRM_AUDIT_USMAN_CALL_TIMEOUT)"
            )
            raise UsmanUnavailable(
                f"USMAN at {self._where} gave no answer after {attempts_made(made)}{within}: {failure}",
                status_code=failure.status_code,
                attempts=made,
            ) from (failure.__cause__ or failure)
        raise AssertionError("unreachable: the attempts return or raise")  # pragma: no cover

    def _retry_after(self, error: BaseException) -> float | None:
        """A server's Retry-After, honoured whole within the call's time: ``RetryPolicy`` begins no
        wait that would end past the call's deadline, so a longer one ends the chunk's attempts at
        once (unanswered), never a retry sooner than the server asked, which it refuses again."""
        if isinstance(error, _Retryable):
            return error.delay
        return None

    def _attempt(self, company_sso_id: str, emails: list[str], call_deadline: float) -> _Answer:
        import httpx  # loaded by __init__: a dictionary look-up

        from .usman_transport import ACCEPT_ENCODING, UnaskedCoding, answer_deadline

        now = time.monotonic()
        if now >= call_deadline:
            raise _Retryable(f"not asked: the lookup's {self._config.call_timeout:g} s had run out")
        deadline = min(now + self._answer_seconds, call_deadline)
        try:
            with (
                answer_deadline(deadline),
                self._http.stream(
                    "POST",
                    self._config.path,
                    json={"company_sso_id": company_sso_id, "emails": emails},
                    # No token, no header: "Bearer " alone is not a valid header value, and a
                    # directory that needs a token answers 401 (a clear refusal) to its absence.
                    headers={self._config.auth_header: self._config.auth_value()}
                    if self._config.token
                    else {},
                ) as response,
            ):
                status = response.status_code
                if status == 200 and _is_html(response.headers):
                    raise self._html_page()
                body = self._body(response, len(emails), deadline, call_deadline) if status == 200 else b""
        except UnaskedCoding as exc:
            # Asked for gzip or deflate only (usman_transport.ACCEPT_ENCODING): a server or proxy that
            # codes the answer otherwise does so on every retry, and inflating a coding we did not ask
            # for is where a small body becomes gigabytes (brotli, zstandard). As an outage it would
            # write the page's actors degraded for good.
            raise UsmanRefused(
                f"USMAN at {self._where} answered in a Content-Encoding it was not asked for "
                f"({exc.coding}; asked: {ACCEPT_ENCODING}): make the server, or a proxy before it, honour "
                "Accept-Encoding; the records that needed this lookup were not written (pages written "
                "before it are kept: a run resumes from its cursor)",
                status_code=200,
            ) from None
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline:
                raise _Retryable(self._late(deadline == call_deadline)) from exc
            raise _Retryable(f"timed out ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:
            unverified = _unverified_certificate(exc)
            if unverified is not None:
                # No answer a retry changes (self-signed, expired, another host's): degrading would write
                # the actors of the rows before the halt for good, as a refusal does not (DirectoryRefused).
                raise UsmanRefused(
                    f"USMAN at {self._where} presented a TLS certificate that could not be verified "
                    f"({unverified.verify_message or 'verification failed'}): give the CA that signs it "
                    "(SSL_CERT_FILE) or the host it names (CRM_AUDIT_USMAN_BASE_URL); the records that "
                    "needed this lookup were not written (pages written before it are kept: a run resumes "
                    "from its cursor)"
                ) from exc
            # Transport errors, and a body that fails to decode (a broken Content-Encoding).
            raise _Retryable(f"request failed ({type(exc).__name__})") from exc
        if 300 <= status < 400:
            # Redirects are never followed (the token would go where the server points), so a redirect
            # is no answer, now or on retry: a base URL or path that is not USMAN's endpoint. As an
            # outage it would write the page's actors degraded for good. The Location is the server's
            # text, not quoted: the message says what to fix, not where.
            raise UsmanRefused(
                f"USMAN at {self._where} answered HTTP {status} (a redirect; redirects are not followed): "
                "set CRM_AUDIT_USMAN_BASE_URL and CRM_AUDIT_USMAN_PATH to the endpoint that answers; the "
                "records that needed this lookup were not written (pages written before it are kept: a "
                "run resumes from its cursor)",
                status_code=status,
            )
        if status in _RETRYABLE_4XX or status >= 500:
            raise _Retryable(f"HTTP {status}", status_code=status, delay=_retry_after(response))
        if 400 <= status < 500:
            raise UsmanRefused(
                f"USMAN at {self._where} refused the request with HTTP {status}: check the USMAN token, "
                "path and permissions (CRM_AUDIT_USMAN_*); the records that needed this lookup were not "
                "written (pages written before it are kept: a run resumes from its cursor)",
                status_code=status,
            )
        if status != 200:
            # Any other 2xx (201, 202, 204, 206, …): the contract's only answer is a 200, so this is
            # an endpoint that is not the lookup (a POST that creates, queues or partly serves), or a
            # proxy's, not an outage. As an outage it would write the page's actors
            # degraded for good; a retry gets the same.
            raise UsmanRefused(
                f"USMAN at {self._where} answered HTTP {status}, not 200 (the lookup answers 200 only): "
                "set CRM_AUDIT_USMAN_BASE_URL and CRM_AUDIT_USMAN_PATH to the endpoint that answers; the "
                "records that needed this lookup were not written (pages written before it are kept: a "
                "run resumes from its cursor)",
                status_code=status,
            )
        found = self._parse(body)
        self._accepted[company_sso_id] = emails[0]  # a request USMAN took: a probe it takes (_probe)
        return found

    def _html_page(self) -> UsmanRefused:
        """A 200 labelled HTML: what a sign-in gateway, a proxy's block page or a web application's
        catch-all route serves in place of the lookup, and serves again on every retry. As an outage
        it wrote the page's actors degraded for good (up to the halt rule's bound) on every run; as a
        refusal nothing is written until the base URL, path or proxy is fixed. Only the media type
        decides (never the body's look): a USMAN labelling its JSON ``text/plain`` is read as JSON,
        and a proxy's error page with a 502 or 503 is still an outage, retried."""
        return UsmanRefused(
            f"USMAN at {self._where} answered HTTP 200 with an HTML page (Content-Type text/html), not "
            "the lookup's JSON: a sign-in page or a proxy's, or a base URL or path that is not the "
            "lookup; set CRM_AUDIT_USMAN_BASE_URL and CRM_AUDIT_USMAN_PATH (or the proxy) to reach the "
            "endpoint that answers; the records that needed this lookup were not written (pages written "
            "before it are kept: a run resumes from its cursor)",
            status_code=200,
        )

    def _body(self, response: httpx.Response, emails: int, deadline: float, call_deadline: float) -> bytes:
        """A 200 answer's body, read as it streams in: at most ``answer_bytes(emails)`` counted as
        inflated (a larger one is ``UsmanUnavailable``, never held, never inflated past the bound), and
        whole by ``deadline`` (else a timeout: retried). ``UnaskedCoding`` for a ``Content-Encoding``
        other than gzip or deflate, ``httpx.DecodingError`` for a body its coding cannot decode."""
        from .usman_transport import BoundedInflater, content_coding

        limit = answer_bytes(emails)
        coding = content_coding(response.headers)
        inflater = None if coding is None else BoundedInflater(coding)
        chunks: list[bytes] = []
        size = 0
        for raw in response.iter_raw():
            chunk = raw if inflater is None else inflater.feed(raw, limit - size)
            size += len(chunk)
            if size > limit:
                raise UsmanUnavailable(
                    f"USMAN at {self._where} answered more than {limit} bytes for {emails} email(s): "
                    "not an answer to this request",
                    status_code=200,
                    attempts=1,
                )
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise _Retryable(self._late(deadline == call_deadline))
        if inflater is not None:
            inflater.end()
        return b"".join(chunks)

    def _late(self, call: bool = False) -> str:
        if call:
            return f"timed out (the lookup's {self._config.call_timeout:g} s ran out before the answer)"
        return f"timed out (the answer was not whole within {self._answer_seconds:g} s)"

    def _parse(self, body: bytes) -> _Answer:
        try:
            decoded = json.loads(body, object_pairs_hook=_unique_members, parse_constant=_no_constant)
        except _NotStrictJson as exc:
            raise UsmanUnavailable(
                f"USMAN at {self._where} answered JSON no strict reader takes: {exc}",
                status_code=200,
                attempts=1,
            ) from exc
        except Exception as exc:  # not JSON, not UTF-8, nested past the recursion limit, …
            raise UsmanUnavailable(
                f"USMAN at {self._where} answered a body that is not JSON ({type(exc).__name__})",
                status_code=200,
                attempts=1,
            ) from exc
        try:
            return sso_ids_in_answer(decoded)
        except ValueError as exc:
            raise UsmanUnavailable(
                f"USMAN at {self._where} answered the wrong shape: {exc}", status_code=200, attempts=1
            ) from exc


class _NotStrictJson(ValueError):
    """A text Python's ``json`` reads, but that is no answer to trust (RFC 8259): its message is ours."""


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object of the answer, refused when it names a member twice: RFC 8259 §4 leaves which one
    counts to each reader, and Python's keeps the last. ``{"email": a, "sso_id": s, "email": b}`` gave
    ``b`` the id USMAN gave ``a`` (history written to the wrong person), and a second ``"data": []``
    made every user of the answer unknown, a ``[Deleted CRM User]`` that is never counted."""
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _NotStrictJson("an object names a member twice (which one counts is each reader's guess)")
    return members


def _no_constant(name: str) -> object:
    """``NaN``, ``Infinity`` and ``-Infinity``, which Python's ``json`` reads and JSON has not."""
    raise _NotStrictJson(f"{name} is no JSON value")


def _unverified_certificate(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a request error (httpx raises its ``ConnectError``
    from httpcore's, raised from ``ssl``'s), if that is what it was."""
    import ssl

    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
"""Media types of a page for people (RFC 2854, RFC 3236), never the lookup's answer."""


def _is_html(headers: httpx.Headers) -> bool:
    """Whether an answer's ``Content-Type`` is an HTML page's, whatever its parameters and case."""
    media_type: str = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type in _HTML_TYPES


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, _Retryable)


def _retry_after(response: httpx.Response) -> float | None:
    """A 429's or 5xx's ``Retry-After`` in seconds from now: delay-seconds, or an HTTP date (RFC 9110
    10.2.3; one past is 0); None when absent or neither, the backoff schedule then decides."""
    value: str = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # only for a date: the runner's start skips it

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as an HTTP date always is
            when = when.replace(tzinfo=dt.UTC)
        seconds = max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
