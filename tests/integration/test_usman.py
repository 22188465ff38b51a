"""The USMAN client against a real HTTP server on 127.0.0.1 that answers, stalls and fails on cue."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any, BinaryIO

import certifi
import httpcore
import httpx
import pytest

from crm_audit_adapters import usman
from crm_audit_adapters.usman import (
    PROBE_EMAIL,
    UnusableUsmanSetting,
    UsmanClient,
    UsmanConfig,
    UsmanRefused,
    UsmanUnavailable,
    answer_bytes,
)
from crm_audit_adapters.usman_answers import MAX_SSO_ID_CHARS
from crm_audit_transform.errors import DirectoryRefused, DirectoryUnavailable
from support.usman_server import (
    PATH,
    TOKEN,
    Reply,
    SeenRequest,
    UsmanServer,
    answer,
    body,
    drip,
    drip_headers,
    drop,
    hang,
    slow,
    status,
)

COMPANY = "company-acme"
NUR = "nur.4@acme.example"
DIRECTORY = {
    COMPANY: {
        "agus.1@acme.example": "sso-agus",
        "Ketut.2@Acme.Example": "sso-ketut",
        "nur.4@acme.example": "sso-nur",
    },
    "company-globex": {"dewi@globex.example": "sso-dewi"},
}


@pytest.fixture
def server() -> Iterator[UsmanServer]:
    with UsmanServer(directory={company: dict(users) for company, users in DIRECTORY.items()}) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(server: UsmanServer, sleeps: list[float], **overrides: Any) -> UsmanClient:
    options: dict[str, Any] = {
        "base_url": server.url,
        "token": TOKEN,
        "path": PATH,
        "connect_timeout": 1.0,
        "read_timeout": 0.2,
        "max_attempts": 3,
        "backoff_base": 0.1,
        "backoff_max": 2.0,
    }
    options.update(overrides)
    return UsmanClient(UsmanConfig(**options), sleep=sleeps.append, random=lambda: 0.5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestAnswers:
    def test_known_emails_map_to_sso_ids_and_unknown_ones_are_absent(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Found users come back by email; an email USMAN does not know is simply missing."""
        with client_for(server, sleeps) as client:
            found = client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example", "ghost@acme.example"])
        assert found == {"agus.1@acme.example": "sso-agus"}

    def test_request_carries_the_company_the_emails_and_the_auth_header(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """The wire request is a POST of {company_sso_id, emails} to the configured path with the token."""
        with client_for(server, sleeps) as client:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        [request] = server.requests
        assert (request.method, request.path) == ("POST", PATH)
        assert request.payload == {"company_sso_id": COMPANY, "emails": ["nur.4@acme.example"]}
        assert request.headers["authorization"] == f"Bearer {TOKEN}"

    def test_without_a_token_no_auth_header_is_sent(self, sleeps: list[float]) -> None:
        """An empty token sends no auth header (never a bare "Bearer "): a directory needing none answers."""
        with UsmanServer(directory=DIRECTORY, token="") as open_server:
            with client_for(open_server, sleeps, token="") as client:
                found = client.sso_ids_by_emails(COMPANY, [NUR])
            [request] = open_server.requests
        assert found == {NUR: "sso-nur"}
        assert "authorization" not in request.headers

    def test_emails_match_case_insensitively_and_keep_the_callers_spellings(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Every spelling the caller used gets the id, and the email goes over the wire once."""
        with client_for(server, sleeps) as client:
            found = client.sso_ids_by_emails(COMPANY, ["ketut.2@acme.example", "KETUT.2@ACME.EXAMPLE"])
        assert found == {"ketut.2@acme.example": "sso-ketut", "KETUT.2@ACME.EXAMPLE": "sso-ketut"}
        assert server.posted_emails() == [["ketut.2@acme.example"]]

    @pytest.mark.parametrize(
        ("stored", "asked"),
        [
            ("straße@acme.example", "strasse@acme.example"),
            ("kelvin@acme.example", "\u212aelvin@acme.example"),  # KELVIN SIGN, casefolds to "k"
            ("ǆemal@acme.example", "ǅemal@acme.example"),
        ],
    )
    def test_only_ascii_case_is_ignored(
        self, server: UsmanServer, sleeps: list[float], stored: str, asked: str
    ) -> None:
        """Emails that only casefold alike are different users; ASCII case alone still matches."""
        server.directory = {COMPANY: {stored: "sso-stored"}}
        shouted = "".join(c.upper() if "a" <= c <= "z" else c for c in stored)
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [asked]) == {}
            assert client.sso_ids_by_emails(COMPANY, [shouted]) == {shouted: "sso-stored"}

    def test_lookups_are_scoped_to_the_company(self, server: UsmanServer, sleeps: list[float]) -> None:
        """A user of another company is not found."""
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, ["dewi@globex.example"]) == {}

    def test_no_emails_means_no_request(self, server: UsmanServer, sleeps: list[float]) -> None:
        """Nothing to resolve, nothing sent (empty strings included)."""
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, ["", ""]) == {}
        assert server.requests == []

    def test_a_null_sso_id_counts_as_not_found(self, server: UsmanServer, sleeps: list[float]) -> None:
        """An entry whose sso_id is null is a user without an SSO account: absent from the result."""
        server.queue(body(b'{"data": [{"email": "agus.1@acme.example", "sso_id": null}]}'))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example"]) == {}

    def test_header_name_and_scheme_are_configurable(self, sleeps: list[float]) -> None:
        """A bare token in a custom header (X-Api-Key) is sent as configured."""
        directory = {COMPANY: {"agus.1@acme.example": "sso-agus"}}
        with UsmanServer(directory=directory, auth_header="X-Api-Key", auth_scheme="") as server:
            client = client_for(server, sleeps, auth_header="X-Api-Key", auth_scheme="")
            with client:
                assert client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example"]) == {
                    "agus.1@acme.example": "sso-agus"
                }
            assert server.requests[0].headers["x-api-key"] == TOKEN


class TestChunking:
    def test_one_request_per_chunk_each_email_sent_once(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """250 emails with a limit of 100 go out as requests of 100, 100 and 50, every email exactly once."""
        emails = [f"user{n:03d}@acme.example" for n in range(250)] + ["agus.1@acme.example"]
        with client_for(server, sleeps, max_emails_per_request=100) as client:
            found = client.sso_ids_by_emails(COMPANY, emails)
        assert found == {"agus.1@acme.example": "sso-agus"}
        sent = server.posted_emails()
        assert [len(chunk) for chunk in sent] == [100, 100, 51]
        assert sorted(email for chunk in sent for email in chunk) == sorted(emails)

    def test_answers_from_every_chunk_are_merged(self, server: UsmanServer, sleeps: list[float]) -> None:
        """Users found in different chunks all come back."""
        emails = ["agus.1@acme.example", "ketut.2@acme.example", "nur.4@acme.example"]
        with client_for(server, sleeps, max_emails_per_request=1) as client:
            found = client.sso_ids_by_emails(COMPANY, emails)
        assert found == dict(zip(emails, ["sso-agus", "sso-ketut", "sso-nur"], strict=True))
        assert len(server.requests) == 3

    def test_chunks_share_one_pooled_connection(self, server: UsmanServer, sleeps: list[float]) -> None:
        """Consecutive requests reuse the same keep-alive connection."""
        with client_for(server, sleeps, max_emails_per_request=2) as client:
            client.sso_ids_by_emails(COMPANY, [f"u{n}@acme.example" for n in range(6)])
        assert len(server.requests) == 3
        assert len({request.peer for request in server.requests}) == 1

    def test_a_failing_chunk_leaves_its_own_emails_unanswered(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """The second of three chunks gets 500s until its attempts run out: its email is unanswered,
        the first and third chunks' answers are kept (the third is still asked). Before, the call
        raised with no partial answer after the second chunk, and every actor of the page degraded
        (the third never asked): this test fails there."""
        server.queue(answer, status(500), status(500), status(500))
        emails = ["agus.1@acme.example", "Ketut.2@Acme.Example", "ketut.2@acme.example", "nur.4@acme.example"]
        with (
            client_for(server, sleeps, max_emails_per_request=1) as client,
            pytest.raises(UsmanUnavailable) as caught,
        ):
            client.sso_ids_by_emails(COMPANY, emails)
        assert len(server.requests) == 5
        assert caught.value.answered == {"agus.1@acme.example": "sso-agus", "nur.4@acme.example": "sso-nur"}
        assert caught.value.unanswered == {"Ketut.2@Acme.Example", "ketut.2@acme.example"}
        assert caught.value.status_code == 500
        assert "1 of 3 email(s) unanswered" in str(caught.value)

    def test_when_no_chunk_is_answered_every_email_is_unanswered(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Every chunk failing is the outage as it was: the first failure, ``unanswered`` None; each
        chunk is asked (before, the first failure ended the call: this test fails there)."""
        server.default = status(503)
        with (
            client_for(server, sleeps, max_emails_per_request=1, max_attempts=2) as client,
            pytest.raises(UsmanUnavailable, match="gave no answer after 2 attempts") as caught,
        ):
            client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example", "nur.4@acme.example"])
        assert caught.value.unanswered is None
        assert len(server.requests) == 4

    def test_the_page_keeps_the_answered_chunks_and_degrades_the_failed_ones(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Through ``fetch_lookups``: the failed chunk's user is the one unanswered email (its actor
        degrades, and the next page asks USMAN again), the others' ids are used and remembered."""
        from crm_audit_transform.domain import CrmUser
        from crm_audit_transform.lookup import LookupPorts, LookupRequest, fetch_lookups
        from crm_audit_transform.lookup_cache import LookupCache
        from crm_audit_transform.testing.lookups import InMemoryContactDirectory, InMemoryUserDirectory

        users = {
            n: CrmUser(id=n, email=email, full_name=email)
            for n, email in enumerate(["agus.1@acme.example", "ketut.2@acme.example", "nur.4@acme.example"])
        }
        cache = LookupCache()
        server.queue(answer, status(500), status(500), status(500), answer)
        with client_for(server, sleeps, max_emails_per_request=1) as client:
            ports = LookupPorts(
                InMemoryUserDirectory({"acme": users.values()}), client, InMemoryContactDirectory()
            )
            request = LookupRequest(user_ids=(0, 1, 2))
            first = fetch_lookups(request, company_sso_id=COMPANY, tenant="acme", ports=ports, cache=cache)
            assert first.sso_ids == {"agus.1@acme.example": "sso-agus", "nur.4@acme.example": "sso-nur"}
            assert first.sso_unanswered == {"ketut.2@acme.example"}
            assert not first.sso_answered("ketut.2@acme.example")
            assert first.sso_answered("agus.1@acme.example")
            again = fetch_lookups(request, company_sso_id=COMPANY, tenant="acme", ports=ports, cache=cache)
        assert again.sso_available
        assert again.sso_ids["ketut.2@acme.example"] == "sso-ketut"
        assert server.posted_emails()[-1] == ["ketut.2@acme.example"]  # only the failed one asked again


class TestCallTimeout:
    """The whole lookup ends within ``call_timeout`` (usman_config.LEASE_SHARE)."""

    def test_a_hanging_server_is_cut_off_at_the_call_timeout_not_per_attempt(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Three chunks to a server that never answers, a 5 s read timeout and three attempts: each
        attempt was bounded alone (1 + 3 x 5 s), so the call could wait 3 chunks x 3 attempts x 16 s
        (with the defaults, about 5 minutes against a 2-minute lease). The call ends at its 0.5 s:
        the first attempt is cut off there, no retry, no other chunk asked. Before, there was no
        call_timeout: this test fails there."""
        server.default = hang
        with (
            client_for(
                server,
                sleeps,
                read_timeout=5.0,
                max_emails_per_request=1,
                call_timeout=0.5,
                backoff_base=0.0,
            ) as client,
            pytest.raises(UsmanUnavailable, match=r"lookup's 0.5 s") as caught,
        ):
            client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example", "ketut.2@acme.example", NUR])
        assert len(server.requests) == 1
        assert caught.value.attempts == 1
        assert caught.value.unanswered is None  # nothing answered: the outage as a whole

    def test_no_backoff_wait_is_begun_past_the_call_timeout(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A 503 asking to wait 5 s (Retry-After, up to backoff_max) with 1 s left: no wait, no retry.
        Before, the client slept 5 s twice before it gave up: this test fails there."""
        server.default = status(503, {"Retry-After": "5"})
        with (
            client_for(server, sleeps, backoff_max=5.0, call_timeout=1.0) as client,
            pytest.raises(UsmanUnavailable, match=r"after 1 attempt within the lookup's 1 s"),
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert sleeps == []
        assert len(server.requests) == 1

    def test_a_chunk_the_time_ran_out_for_is_never_asked(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """The first chunk answered, the second hangs to the call's end: the first's answer is kept, the
        second and third are unanswered, the third never asked."""
        server.queue(answer, hang)
        emails = ["agus.1@acme.example", "ketut.2@acme.example", NUR]
        with (
            client_for(
                server, sleeps, read_timeout=5.0, max_emails_per_request=1, call_timeout=2.0
            ) as client,
            pytest.raises(UsmanUnavailable) as caught,
        ):
            client.sso_ids_by_emails(COMPANY, emails)
        assert len(server.requests) == 2
        assert caught.value.answered == {"agus.1@acme.example": "sso-agus"}
        assert caught.value.unanswered == {"ketut.2@acme.example", NUR}

    def test_the_runner_gives_a_lookup_at_most_half_the_lease(self) -> None:
        """A page's lookups end within the half of the lease its renewal leaves: a 20 s lease makes
        the default 45 s call_timeout 10 s; a shorter call_timeout is kept; a lease of a second (a
        test's) still leaves one request's connect and read (2 + 5 s)."""
        config = UsmanConfig(base_url="http://usman.example")
        assert config.call_timeout == 45.0
        assert config.within_lease(20.0).call_timeout == 10.0
        assert config.within_lease(120.0) is config
        assert config.within_lease(1.0).call_timeout == 7.0
        assert (
            UsmanConfig.from_env(
                {"CRM_AUDIT_USMAN_BASE_URL": "http://u.example", "CRM_AUDIT_USMAN_CALL_TIMEOUT": "7.5"}
            ).call_timeout
            == 7.5
        )


class TestRetries:
    def test_a_500_then_a_200_is_retried_into_an_answer(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A transient server error is retried after one backoff."""
        server.queue(status(500))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert len(server.requests) == 2
        assert len(sleeps) == 1

    def test_always_500_exhausts_the_attempts_with_growing_backoff(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Every attempt fails: DirectoryUnavailable after max_attempts, backoff doubling between them."""
        server.default = status(500)
        with (
            client_for(server, sleeps, max_attempts=4) as client,
            pytest.raises(DirectoryUnavailable) as caught,
        ):
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert isinstance(caught.value, UsmanUnavailable)
        assert (caught.value.status_code, caught.value.attempts) == (500, 4)
        assert len(server.requests) == 4
        # base 0.1, equal jitter with random() = 0.5: 3/4 of 0.1, 0.2, 0.4
        assert sleeps == pytest.approx([0.075, 0.15, 0.3])

    def test_backoff_never_exceeds_the_cap(self, server: UsmanServer, sleeps: list[float]) -> None:
        """However many attempts, no single wait is longer than backoff_max."""
        server.default = status(503)
        client = client_for(server, sleeps, max_attempts=8, backoff_base=1.0, backoff_max=3.0)
        with client, pytest.raises(UsmanUnavailable):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert max(sleeps) <= 3.0
        assert sleeps[-1] == pytest.approx(2.25)

    def test_a_slow_answer_beyond_the_read_timeout_is_retried(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """An answer later than read_timeout counts as a timeout and the request is sent again.

        At least once: on a loaded machine the next, prompt answer may miss the 0.2 s read timeout
        too (a check saw three requests), and is sent again in turn."""
        server.queue(slow(1.0))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert len(server.requests) >= 2

    def test_a_server_that_always_stalls_becomes_unavailable_from_a_timeout(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Slow every time: the error is DirectoryUnavailable caused by httpx's read timeout."""
        server.default = slow(1.0)
        with client_for(server, sleeps, max_attempts=2) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert caught.value.status_code is None

    def test_a_hanging_server_becomes_unavailable(self, server: UsmanServer, sleeps: list[float]) -> None:
        """A server that accepts and never answers is given up on after the attempts."""
        server.default = hang
        with client_for(server, sleeps, max_attempts=2) as client, pytest.raises(UsmanUnavailable):
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert len(server.requests) == 2

    def test_a_dropped_connection_is_retried(self, server: UsmanServer, sleeps: list[float]) -> None:
        """The server closing the connection without a response is retried."""
        server.queue(drop)
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}

    def test_a_body_that_cannot_be_decoded_is_retried_then_unavailable(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A Content-Encoding the body does not honour is a request error: retried, then unavailable."""
        server.default = status(200, {"Content-Encoding": "gzip"})
        with client_for(server, sleeps, max_attempts=2) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert isinstance(caught.value.__cause__, httpx.DecodingError)
        assert len(server.requests) == 2

    def test_nothing_listening_becomes_unavailable_from_a_connect_error(self, sleeps: list[float]) -> None:
        """Connection refused is retried, then reported as DirectoryUnavailable."""
        config = UsmanConfig(base_url=f"http://127.0.0.1:{closed_port()}", token=TOKEN, backoff_base=0.0)
        with UsmanClient(config, sleep=sleeps.append) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert len(sleeps) == config.max_attempts - 1

    def test_429_is_retried_and_retry_after_is_honoured(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """Too Many Requests waits at least the server's Retry-After (up to the cap), then retries."""
        server.queue(status(429, {"Retry-After": "1.5"}))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert sleeps == [1.5]

    def test_a_retry_after_past_the_backoff_cap_is_waited_whole_within_the_calls_time(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A 503 asking for 3 s, the backoff capped at 2 s: the retry comes after the 3 s asked (within
        the call's 45 s), not sooner, when the server would refuse it again. Before, the wait was cut
        to ``backoff_max`` (2 s); this test fails there."""
        server.queue(status(503, {"Retry-After": "3"}))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert sleeps == [3.0]

    @pytest.mark.parametrize("code", [429, 503])
    def test_a_retry_after_past_the_calls_time_ends_the_attempts_at_once(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """A 429 or 503 asking for 2 minutes, the call given 5 s: no wait is begun and no retry sent
        (it would come sooner than asked): ``UsmanUnavailable`` after one request, the chunk
        unanswered (its actors degrade, counted). Before, the client retried every ``backoff_max``
        (2 s) until its attempts ran out; this test fails there."""
        server.default = status(code, {"Retry-After": "120"})
        with (
            client_for(server, sleeps, call_timeout=5.0) as client,
            pytest.raises(UsmanUnavailable) as caught,
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert (caught.value.status_code, caught.value.attempts) == (code, 1)
        assert (len(server.requests), sleeps) == (1, [])

    def test_a_retry_after_as_an_http_date_is_honoured(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """``Retry-After`` may be an HTTP date (RFC 9110 10.2.3): waited until then. Before, a date was
        ignored and the backoff schedule (75 ms here) decided; this test fails there."""
        when = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20), usegmt=True)
        server.queue(status(429, {"Retry-After": when}))
        with client_for(server, sleeps, call_timeout=60.0) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert len(sleeps) == 1
        assert 15.0 < sleeps[0] <= 20.0

    @pytest.mark.parametrize(
        "failing",
        [status(503), status(401), drop, slow(1.0), status(200, {"Content-Type": "text/html"})],
        ids=["503", "401", "reset", "slow", "html"],
    )
    def test_the_pool_stays_usable_after_an_answer_that_is_no_answer(
        self, server: UsmanServer, sleeps: list[float], failing: Any
    ) -> None:
        """With one pooled connection: after a 503, a 401, a reset, a read timeout or a 200 HTML page,
        whose connection httpx closes (its body unread, or cut off), the client's next request opens
        a new one and is answered; no slot of the pool is held by the closed one (the next request
        would wait for it and fail with ``PoolTimeout``). A 401 and an HTML page are not retried."""
        with client_for(server, sleeps, max_connections=1, max_attempts=1) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
            server.queue(failing)
            with pytest.raises((UsmanUnavailable, UsmanRefused)):
                client.sso_ids_by_emails(COMPANY, [NUR])
            assert len(server.requests) == 2  # one attempt, none retried
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        peers = [request.peer for request in server.requests]
        assert peers[0] == peers[1]  # the first connection kept for the next request
        assert peers[2] != peers[1]  # the failed one closed: a new connection
        assert peers[3] == peers[2]  # and that one kept in the pool

    @pytest.mark.parametrize("code", [401, 403, 404])
    def test_client_errors_are_refusals_not_outages(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """A 4xx other than 408/429 will not change on retry: one request, then a DirectoryRefused."""
        server.queue(status(code))
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert caught.value.status_code == code
        assert len(server.requests) == 1
        assert sleeps == []
        # A run stops here after earlier pages were written: the message must not say none were.
        assert "nothing was written" not in str(caught.value)
        assert "pages written before it are kept" in str(caught.value)

    @pytest.mark.parametrize("code", [300, 301, 302, 303, 304, 305, 307, 308])
    def test_a_redirect_is_a_refusal_not_an_outage(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """A redirect is never followed (the token would go where the server points), so it is never an
        answer, now or on retry: a base URL left at http:// after a move to https://, a path behind a
        login page. Before, a 302/303/307 (and 300, 304, 305) was an outage: a run degraded the actors
        of its first rows for good before it halted, and verify called those logs drifted until a
        trigger --fresh; this test fails there for those codes (UsmanUnavailable)."""
        server.queue(status(code, {"Location": "https://elsewhere.example/?token=leak"}))
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert caught.value.status_code == code
        assert len(server.requests) == 1
        assert sleeps == []
        assert "elsewhere" not in str(caught.value)
        assert "CRM_AUDIT_USMAN_BASE_URL" in str(caught.value)

    def test_a_redirect_to_another_host_sends_it_nothing(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A redirect to another host (here a second server redirecting back: a loop) is never
        followed: one request, to USMAN only, a refusal; the other host never sees the token."""
        with UsmanServer(directory=DIRECTORY) as other:
            other.default = status(307, {"Location": server.url + PATH})
            server.default = status(307, {"Location": other.url + PATH})
            with client_for(server, sleeps) as client, pytest.raises(UsmanRefused, match="HTTP 307"):
                client.sso_ids_by_emails(COMPANY, [NUR])
            assert other.requests == []
        assert len(server.requests) == 1
        assert sleeps == []

    def test_a_header_past_httpcores_bound_is_an_outage(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A header block over httpcore's bound (100 KiB: h11's ``max_incomplete_event_size``) is
        never held whole: each attempt fails as a protocol error, retried, then ``UsmanUnavailable``
        (its actors degrade, counted). The read timeout is generous: the error comes once httpcore has
        read past its bound, and under load the 0.2 s of ``client_for`` ran out first (a timeout)."""
        server.default = lambda server, request: Reply(200, b'{"data": []}', headers={"X-Pad": "p" * 300_000})
        with (
            client_for(server, sleeps, read_timeout=5.0) as client,
            pytest.raises(UsmanUnavailable) as caught,
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
        assert len(server.requests) == 3
        assert caught.value.unanswered is None

    @pytest.mark.parametrize("code", [201, 202, 203, 204, 205, 206, 207, 208, 226])
    def test_a_2xx_but_200_is_a_refusal_not_an_outage(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """The lookup answers 200 only: a 201/202/204/206 comes from an endpoint that is not it (a POST
        that creates or queues, a proxy's partial content), and a retry gets the same. Before, it was
        an outage: a run wrote the actors of its first rows degraded for good; this test fails there
        (UsmanUnavailable). A 204 or 205 comes as HTTP has it, with no content (``TestTheTestServer``)."""
        server.queue(status(code))
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert caught.value.status_code == code
        assert len(server.requests) == 1
        assert sleeps == []
        assert f"HTTP {code}" in str(caught.value)
        assert "CRM_AUDIT_USMAN_BASE_URL" in str(caught.value)

    @pytest.mark.parametrize("reason", ["self-signed certificate", "certificate has expired"])
    def test_a_certificate_that_cannot_be_verified_is_a_refusal_not_an_outage(
        self, sleeps: list[float], reason: str
    ) -> None:
        """The chain httpx raises on a failed verification (its ConnectError from httpcore's, from ssl's):
        one attempt, then a DirectoryRefused saying why. Before, it was retried as an outage and a run
        degraded the actors of its first rows for good, as for a permanent redirect."""
        import ssl

        def handshake(request: httpx.Request) -> httpx.Response:
            failed = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {reason}")
            failed.verify_message = reason
            try:
                raise httpcore.ConnectError(str(failed)) from failed
            except httpcore.ConnectError as inner:
                raise httpx.ConnectError(str(inner), request=request) from inner

        config = UsmanConfig(base_url="https://usman.example", token=TOKEN, backoff_base=0.0)
        transport = httpx.MockTransport(handshake)
        with (
            UsmanClient(config, transport=transport, sleep=sleeps.append) as client,
            pytest.raises(UsmanRefused, match=reason) as caught,
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert sleeps == []
        assert caught.value.status_code is None
        assert TOKEN not in str(caught.value)

    def test_a_connection_refused_over_tls_is_still_an_outage(self, sleeps: list[float]) -> None:
        """Only a verification failure is a refusal: any other TLS or connect error is retried."""
        import ssl

        def handshake(request: httpx.Request) -> httpx.Response:
            try:
                raise httpcore.ConnectError("EOF") from ssl.SSLEOFError(
                    8, "EOF occurred in violation of protocol"
                )
            except httpcore.ConnectError as inner:
                raise httpx.ConnectError(str(inner), request=request) from inner

        config = UsmanConfig(base_url="https://usman.example", token=TOKEN, backoff_base=0.0)
        with (
            UsmanClient(config, transport=httpx.MockTransport(handshake), sleep=sleeps.append) as client,
            pytest.raises(UsmanUnavailable),
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert len(sleeps) == config.max_attempts - 1

    @pytest.mark.parametrize("code", [400, 422])
    def test_a_400_or_422_to_every_email_and_to_the_probe_is_a_refusal(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """Refused for the lone email and for a well-formed probe too: the request itself is wrong, a
        DirectoryRefused (never retried), not an email to set apart."""
        server.default = status(code)
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert caught.value.status_code == code
        assert server.posted_emails() == [["nur.4@acme.example"], [PROBE_EMAIL]]
        assert sleeps == []

    @pytest.mark.parametrize("code", [400, 422])
    def test_emails_usman_refuses_are_unknown_and_the_rest_answered(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """USMAN validating its input refuses any chunk holding "n/a": the chunk is halved until that
        email is alone; it is answered as unknown (no sso id) and the others as USMAN answers them,
        so one bad CRM email never stops the account's runs."""

        def validating(server: UsmanServer, request: SeenRequest) -> Reply:
            if any("@" not in email for email in request.payload["emails"]):
                return Reply(code, b'{"errors": [{"message": "invalid email"}]}')
            return answer(server, request)

        server.default = validating
        asked = ["agus.1@acme.example", "n/a", "nur.4@acme.example", "nobody@acme.example"]
        with client_for(server, sleeps) as client:
            found = client.sso_ids_by_emails(COMPANY, asked)
        assert found == {"agus.1@acme.example": "sso-agus", "nur.4@acme.example": "sso-nur"}
        assert ["n/a"] in server.posted_emails()
        assert [PROBE_EMAIL] not in server.posted_emails()
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, ["n/a"]) == {}  # alone: the probe is answered
        assert server.posted_emails()[-1] == [PROBE_EMAIL]

    @pytest.mark.parametrize("code", [400, 422])
    def test_a_validator_refusing_the_probe_too_never_stops_the_account(
        self, server: UsmanServer, sleeps: list[float], code: int
    ) -> None:
        """A strict validator refuses n/a and the probe's reserved .invalid domain alike: a chunk of
        n/a alone stopped every run of the account (UsmanRefused, exit 3). The probe is first an email
        of the company USMAN took before; with none yet, an email that is no address at all is still
        the email's fault. A well-formed email refused with every probe is still a refusal."""

        def strict(server: UsmanServer, request: SeenRequest) -> Reply:
            if any("@" not in email or email.endswith(".invalid") for email in request.payload["emails"]):
                return Reply(code, b'{"errors": [{"message": "invalid email"}]}')
            return answer(server, request)

        server.default = strict
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example"]) == {
                "agus.1@acme.example": "sso-agus"
            }
            assert client.sso_ids_by_emails(COMPANY, ["n/a"]) == {}
        assert server.posted_emails()[-2:] == [["n/a"], ["agus.1@acme.example"]]
        with client_for(server, sleeps) as client:  # nothing taken before: the probe is refused too
            assert client.sso_ids_by_emails(COMPANY, ["n/a"]) == {}
        assert server.posted_emails()[-2:] == [["n/a"], [PROBE_EMAIL]]
        server.default = status(code)
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused):
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example", "x@acme.example"])

    def test_an_email_the_same_call_gets_answered_vouches_for_a_chunk_refused_whole(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A client that took nothing before (a --workers process, a shard's, a resumed run) asks a
        call whose first chunk a strict validator refuses whole, the probe's .invalid domain too: the
        call's later chunk USMAN answers vouches for the request, so the refused email is unknown and
        the run goes on, as in a process that had an answer before (it stopped: UsmanRefused)."""

        def strict(server: UsmanServer, request: SeenRequest) -> Reply:
            if any(
                email.startswith("a+") or email.endswith(".invalid") for email in request.payload["emails"]
            ):
                return Reply(422, b'{"errors": [{"message": "invalid email"}]}')
            return answer(server, request)

        server.default = strict
        with client_for(server, sleeps, max_emails_per_request=1) as client:
            found = client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example", "a+legacy@acme.example"])
        assert found == {"agus.1@acme.example": "sso-agus"}
        assert server.posted_emails() == [
            ["a+legacy@acme.example"],
            ["agus.1@acme.example"],
            ["agus.1@acme.example"],  # the probe: an email the call got answered
        ]
        with client_for(server, sleeps, max_emails_per_request=1) as client, pytest.raises(UsmanRefused):
            client.sso_ids_by_emails(COMPANY, ["a+legacy@acme.example"])  # nothing vouches: still a refusal

    def test_a_wrong_token_is_a_401_without_retry(self, server: UsmanServer, sleeps: list[float]) -> None:
        """The real server refuses a wrong token with 401; the client does not hammer it."""
        with client_for(server, sleeps, token="wrong") as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert caught.value.status_code == 401
        assert isinstance(caught.value, DirectoryRefused)
        assert not isinstance(caught.value, DirectoryUnavailable)
        assert len(server.requests) == 1


class TestMalformedAnswers:
    @pytest.mark.parametrize(
        "raw",
        [
            b"<html>502 Bad Gateway</html>",
            b"",
            b"null",
            b"[]",
            b'{"users": []}',
            b'{"data": {}}',
            b'{"data": [1]}',
            b'{"data": [{"email": 7, "sso_id": "x"}]}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": 5}]}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": ""}]}',
            b'{"data": [{"email": "a@x", "sso_id": "1"}, {"email": "A@X", "sso_id": "2"}]}',
            # No SSO id: a control character (NUL, a line break) or longer than MAX_SSO_ID_CHARS.
            # Before, each was written as the actor's id of every log of that user.
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "../x\\n\\u0000y"}]}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "sso-nur\\u2028"}]}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "' + b"a" * 257 + b'"}]}',
        ],
    )
    def test_garbage_or_the_wrong_shape_is_directory_unavailable(
        self, server: UsmanServer, sleeps: list[float], raw: bytes
    ) -> None:
        """A 200 whose body is not the documented shape raises DirectoryUnavailable, nothing else."""
        server.queue(body(raw))
        with client_for(server, sleeps) as client, pytest.raises(DirectoryUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert caught.value.__cause__ is not None

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "sso-nur"}], "data": []}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "sso-nur", "email": "cy@acme.example"}]}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "sso-nur", "sso_id": "sso-cy"}]}',
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": NaN}, {"email": "cy@acme.example"}]}',
            b'{"data": -Infinity}',
        ],
        ids=["data-twice", "email-twice", "sso-id-twice", "nan", "infinity"],
    )
    def test_json_no_strict_reader_takes_leaves_every_email_unanswered(
        self, server: UsmanServer, sleeps: list[float], raw: bytes
    ) -> None:
        """An object naming a member twice (RFC 8259 §4 leaves which one counts to each reader; Python's
        keeps the last), or ``NaN``/``Infinity`` (no JSON values): the answer as a whole is not trusted,
        so every email of the request is unanswered (its actors degrade, counted), nothing retried.
        Before, the last member counted: the email named second got the id USMAN gave the first
        (history written to the wrong person), a second ``"data": []`` made every user unknown (an
        uncounted ``[Deleted CRM User]``), and a ``NaN`` id left one email unanswered. This test
        fails there."""
        server.queue(body(raw))
        with client_for(server, sleeps) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR, "cy@acme.example"])
        assert caught.value.unanswered is None
        assert caught.value.answered == {}
        assert "no strict reader takes" in str(caught.value)
        assert (len(server.requests), sleeps) == (1, [])

    @pytest.mark.parametrize(
        "content_type", ["text/html", "text/html; charset=utf-8", "TEXT/HTML", "application/xhtml+xml"]
    )
    def test_a_200_html_page_is_a_refusal_and_json_labelled_text_plain_an_answer(
        self, server: UsmanServer, sleeps: list[float], content_type: str
    ) -> None:
        """A 200 labelled HTML (a sign-in gateway's page, a proxy's, a web application's catch-all
        route) is served again on every retry: ``UsmanRefused`` (status 200), asked once, its text
        not quoted, the token in no message. Before, it was an outage: the page's actors were
        written degraded for good on every run (this test fails there). The contract's JSON
        labelled ``text/plain`` is still the answer it holds."""
        page = b"<html><title>Sign in</title>token=Lk9PageSecret</html>"
        server.queue(lambda server, request: Reply(200, page, headers={"Content-Type": content_type}))
        with client_for(server, sleeps) as client:
            with pytest.raises(UsmanRefused, match="HTML page") as caught:
                client.sso_ids_by_emails(COMPANY, [NUR])
            assert caught.value.status_code == 200
            assert isinstance(caught.value, DirectoryRefused)
            assert (len(server.requests), sleeps) == (1, [])
            assert "Lk9PageSecret" not in str(caught.value)
            assert TOKEN not in str(caught.value)
            server.queue(
                lambda server, request: Reply(
                    200,
                    json.dumps({"data": [{"email": NUR, "sso_id": "sso-nur"}]}).encode(),
                    headers={"Content-Type": "text/plain"},
                )
            )
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}

    @pytest.mark.parametrize(
        "bad",
        [5, "", "../x\n\u0000y", "sso-cy\u2028", "a" * (MAX_SSO_ID_CHARS + 1), {"id": "sso-cy"}],
        ids=["number", "empty", "control", "separator", "too-long", "object"],
    )
    def test_one_entry_that_is_no_answer_leaves_only_its_email_unanswered(
        self, server: UsmanServer, sleeps: list[float], bad: object, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Three emails asked: one found, one absent (unknown), one whose sso_id is no id. The answer is
        sound otherwise, so only that email is unanswered (both of its spellings; its actor degrades),
        the other ids stand, and a warning counts it without quoting it. Before, the one entry made the
        whole answer unavailable (every actor of the request degraded): this test fails there."""
        data = [{"email": NUR, "sso_id": "sso-nur"}, {"email": "Cy@acme.example", "sso_id": bad}]
        server.queue(body(json.dumps({"data": data}).encode()))
        asked = [NUR, "ghost@acme.example", "cy@acme.example", "CY@acme.example"]
        with client_for(server, sleeps) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, asked)
        assert caught.value.answered == {NUR: "sso-nur"}
        assert caught.value.unanswered == {"cy@acme.example", "CY@acme.example"}
        assert len(server.requests) == 1
        assert "1 of 3" in str(caught.value)
        assert "1 of 3 emails" in caplog.text
        assert "\u2028" not in caplog.text + str(caught.value)
        assert "aaaa" not in caplog.text + str(caught.value)

    @pytest.mark.parametrize(
        "data",
        [
            # No telling which user an entry answers for.
            [{"email": NUR, "sso_id": "sso-nur"}, 7],
            [{"email": NUR, "sso_id": "sso-nur"}, {"email": None, "sso_id": "x"}],
            # One email, two answers that disagree.
            [{"email": NUR, "sso_id": "sso-nur"}, {"email": NUR.upper(), "sso_id": "sso-other"}],
            [{"email": NUR, "sso_id": "sso-nur"}, {"email": NUR, "sso_id": 5}],
            [{"email": NUR, "sso_id": 5}, {"email": NUR, "sso_id": "sso-nur"}],
            # Nothing in it is well-formed.
            [{"email": NUR, "sso_id": 5}, {"email": "cy@acme.example", "sso_id": ""}],
        ],
    )
    def test_an_answer_untrustworthy_as_a_whole_leaves_every_email_unanswered(
        self, server: UsmanServer, sleeps: list[float], data: list[object]
    ) -> None:
        """Where the answer as a whole cannot be trusted, no email of it is answered (``unanswered`` is
        None: every actor of the request degrades), as before."""
        server.queue(body(json.dumps({"data": data}).encode()))
        with client_for(server, sleeps) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR, "cy@acme.example"])
        assert caught.value.unanswered is None
        assert caught.value.answered == {}
        assert isinstance(caught.value.__cause__, ValueError)

    def test_an_sso_id_up_to_its_bound_is_an_answer(self, server: UsmanServer, sleeps: list[float]) -> None:
        """The bound refuses no id USMAN may hold: any printable text up to MAX_SSO_ID_CHARS."""
        sso = "é ü-" + "a" * (MAX_SSO_ID_CHARS - 4)
        server.queue(body(json.dumps({"data": [{"email": NUR, "sso_id": sso}]}).encode()))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: sso}

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"data": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            b'{"data": [], "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            b'{"data": [{"email": "nur.4@acme.example", "sso_id": "\xff"}]}',
        ],
        ids=["deep data", "deep elsewhere", "not UTF-8"],
    )
    def test_a_body_json_cannot_decode_is_unavailable_not_a_crash(
        self, server: UsmanServer, sleeps: list[float], raw: bytes
    ) -> None:
        """JSON nested past Python's recursion limit made the decoder raise RecursionError, which escaped
        the client: the run crashed INTERNAL (and kept its lease) instead of degrading those actors."""
        server.queue(body(raw))
        with (
            client_for(server, sleeps) as client,
            pytest.raises(UsmanUnavailable, match="not JSON") as caught,
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert caught.value.__cause__ is not None
        assert len(server.requests) == 1  # a retry would get the same body

    def test_an_answer_past_its_bound_is_unavailable_and_never_held(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A 200 answer larger than answer_bytes(emails) was read whole (600 MB cost 1.9 GB): it is
        refused as it streams in, once past the bound, and the actors degrade."""
        pad = b"x" * (answer_bytes(1) + 1)
        server.queue(body(b'{"data": [], "pad": "' + pad + b'"}'))
        with (
            client_for(server, sleeps) as client,
            pytest.raises(UsmanUnavailable, match="more than") as caught,
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert caught.value.status_code == 200
        server.queue(body(b'{"data": [], "pad": "' + pad[: -1 - 64 * 1024] + b'"}'))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {}  # within the bound: an answer

    def test_a_compressed_answer_is_bounded_once_inflated(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A 20 KB gzip body that inflates to 20 MB is refused by its inflated size (a 0.5 MB one of
        500 MB cost the runner 1.6 GB): the bound is on the body the client would decode."""
        import gzip

        inflated = b'{"data": [], "pad": "' + b"0" * 20_000_000 + b'"}'
        packed = gzip.compress(inflated, compresslevel=9)
        assert len(packed) < answer_bytes(1)
        server.queue(lambda server, request: Reply(200, packed, {"Content-Encoding": "gzip"}))
        with client_for(server, sleeps) as client, pytest.raises(UsmanUnavailable, match="more than"):
            client.sso_ids_by_emails(COMPANY, [NUR])

    def test_an_answer_that_drips_in_past_the_attempts_deadline_is_a_timeout(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A byte every 50 ms keeps each read within read_timeout (0.2 s), so the answer came whole
        after seconds (hours for a real chunk at a byte every 3 s). An attempt's answer must be whole
        within connect_timeout + 3 x read_timeout: past that it is a timeout, retried, then unavailable.
        A stall of this loaded machine longer than read_timeout ends an attempt as a read timeout
        instead: either way the dripping answer is never taken."""
        server.default = drip(0.05)
        with (
            client_for(server, sleeps, connect_timeout=0.1, max_attempts=2) as client,
            pytest.raises(UsmanUnavailable, match=r"not whole within 0.7 s|timed out"),
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert len(server.requests) == 2

    def test_headers_that_drip_in_past_the_attempts_deadline_are_a_timeout(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A status line and headers sent a byte every 50 ms keep each read within read_timeout
        (0.2 s), and the deadline covered the body only: the client read headers for as long as the
        server sent them (here about 6 s, then timed out at the body; for ever from a server that
        never ends them). The deadline covers the whole answer: the client hangs up in the middle
        of the headers, a timeout, then unavailable, one request. (A stall of this machine longer
        than read_timeout hangs up as a read timeout instead: the headers are cut off all the same.)"""
        server.default = drip_headers(0.05, pad=60)
        with (
            client_for(server, sleeps, connect_timeout=0.1, max_attempts=1) as client,
            pytest.raises(UsmanUnavailable, match=r"timed out") as raised,
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert raised.value.attempts == 1
        assert len(server.requests) == 1
        assert server.headers_dripped.wait(60)  # the server's side has ended, whole or cut off
        assert server.headers_cut_off == 1

    def test_answers_for_emails_not_asked_are_ignored(self, server: UsmanServer, sleeps: list[float]) -> None:
        """Extra entries in the answer never leak into the result."""
        server.queue(body(b'{"data": [{"email": "other@acme.example", "sso_id": "sso-other"}]}'))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"]) == {}


def _coded(data: bytes, coding: str, *, repeat: int = 1) -> bytes:
    """``data`` (``repeat`` times over) in ``coding``: gzip, deflate (zlib-wrapped) or raw deflate."""
    import zlib

    wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[coding]
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(packer.compress(data) for _ in range(repeat)) + packer.flush()


class TestContentCoding:
    """An answer's body is inflated by the client a read at a time within its bound, never by httpx."""

    @pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
    def test_a_coded_answer_is_read(self, server: UsmanServer, sleeps: list[float], coding: str) -> None:
        """gzip and deflate (zlib-wrapped or raw, as httpx reads it) answers are USMAN's answers."""
        plain = json.dumps({"data": [{"email": NUR, "sso_id": "sso-nur"}], "pad": "x" * 50_000}).encode()
        name = "deflate" if coding == "raw-deflate" else coding
        server.queue(lambda server, request: Reply(200, _coded(plain, coding), {"Content-Encoding": name}))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"

    @pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
    def test_a_bomb_is_never_inflated_past_the_bound(
        self, server: UsmanServer, sleeps: list[float], coding: str
    ) -> None:
        """70 MB of zeros coded into ~70 KB: refused by its inflated size with no more than the bound
        (80 KiB here) inflated at once. Before, httpx inflated each 64 KiB network read whole
        (~64 MB) before the client counted a byte: this test fails there on the peak (tracemalloc)."""
        import tracemalloc

        packed = _coded(b'{"data": [], "pad": "' + b"0" * 1_000_000, coding, repeat=70)
        assert len(packed) < answer_bytes(1)
        name = "deflate" if coding == "raw-deflate" else coding
        server.queue(lambda server, request: Reply(200, packed, {"Content-Encoding": name}))
        tracemalloc.start()
        try:
            with client_for(server, sleeps) as client, pytest.raises(UsmanUnavailable, match="more than"):
                client.sso_ids_by_emails(COMPANY, [NUR])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 1024 * 1024, f"{peak:,} bytes at once"

    @pytest.mark.parametrize("coding", ["br", "zstd"])
    def test_a_coding_not_asked_for_is_refused_and_never_inflated(
        self, server: UsmanServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch, coding: str
    ) -> None:
        """The client asks for gzip and deflate only; httpx inflates brotli and zstandard too when those
        are importable, each read whole. A server or proxy that answers in one anyway (forced here,
        with httpx given a decoder for it) is refused at once — a retry gets the same — and nothing
        inflates it. Before, httpx's decoder inflated it before the bound was counted (here its
        100 MB in one read): this test fails there."""
        from httpx import _decoders

        made: list[str] = []

        class Bomb(_decoders.IdentityDecoder):
            def __init__(self) -> None:
                made.append(coding)

            def decode(self, data: bytes) -> bytes:
                return b"0" * 100_000_000

        monkeypatch.setitem(_decoders.SUPPORTED_DECODERS, coding, Bomb)
        server.queue(lambda server, request: Reply(200, b"\x1b\x00coded", {"Content-Encoding": coding}))
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert made == []
        assert caught.value.status_code == 200
        assert f"({coding}; asked: gzip, deflate)" in str(caught.value)
        assert len(server.requests) == 1
        assert sleeps == []
        assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"

    @pytest.mark.parametrize("header", ["x-private-Kq7", "gzip, gzip", "gzip, br"])
    def test_an_unknown_or_stacked_coding_is_refused_without_quoting_it(
        self, server: UsmanServer, sleeps: list[float], header: str
    ) -> None:
        """A coding of no registry is the server's text, not quoted; codings one over another are not
        what was asked for either."""
        server.queue(lambda server, request: Reply(200, b"{}", {"Content-Encoding": header}))
        with client_for(server, sleeps) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert "Kq7" not in str(caught.value)
        assert "asked: gzip, deflate" in str(caught.value)

    def test_a_coded_body_cut_short_is_retried(self, server: UsmanServer, sleeps: list[float]) -> None:
        """A gzip body whose stream does not end (its trailer cut: no CRC to check it by) is no whole
        answer: a decoding error, retried like a corrupt one. Before, it was taken (one request):
        this test fails there."""
        plain = json.dumps({"data": [{"email": NUR, "sso_id": "sso-nur"}]}).encode()
        cut = _coded(plain, "gzip")[:-6]
        server.queue(lambda server, request: Reply(200, cut, {"Content-Encoding": "gzip"}))
        with client_for(server, sleeps) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        assert len(server.requests) == 2


class TestProxy:
    def test_a_proxy_from_the_environment_is_used_under_the_attempts_deadline(
        self, server: UsmanServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP_PROXY names a proxy (here the test server, which answers in its stead): the request
        goes to it in absolute form, as httpx sends through a proxy from the environment, and that
        connection is under the attempt's deadline too: its dripping headers are cut off."""
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", server.url)
        server.default = drip_headers(0.05, pad=60)
        config = UsmanConfig(
            base_url="http://usman.example",
            token=TOKEN,
            path=PATH,
            connect_timeout=0.1,
            read_timeout=0.2,
            max_attempts=1,
        )
        with (
            UsmanClient(config, sleep=sleeps.append) as client,
            pytest.raises(UsmanUnavailable, match="timed out"),
        ):
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert [request.path for request in server.requests] == [f"http://usman.example{PATH}"]
        assert server.headers_dripped.wait(60)
        assert server.headers_cut_off == 1


class TestSecrecy:
    def test_the_token_is_not_in_any_repr(self, server: UsmanServer, sleeps: list[float]) -> None:
        """Neither the config's nor the client's repr shows the token."""
        config = UsmanConfig(base_url=server.url, token=TOKEN)
        assert TOKEN not in repr(config)
        with UsmanClient(config) as client:
            assert TOKEN not in repr(client)

    def test_the_token_is_not_in_errors_or_logs(
        self, server: UsmanServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Retries, a timeout and a final failure leave no trace of the token in messages or log records."""
        server.queue(status(401), slow(1.0), drop)
        server.default = status(500)
        caplog.set_level(logging.DEBUG)
        with client_for(server, sleeps, max_attempts=4) as client:
            with pytest.raises(UsmanRefused) as refused:
                client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
            with pytest.raises(UsmanUnavailable) as caught:
                client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert TOKEN not in str(refused.value)
        chain: list[BaseException] = []
        error: BaseException | None = caught.value
        while error is not None:
            chain.append(error)
            error = error.__cause__ or error.__context__
        assert len(chain) >= 2
        for error in chain:
            assert TOKEN not in str(error)
            assert TOKEN not in repr(error)
        assert caplog.records, "the retries were logged"
        for record in caplog.records:
            assert TOKEN not in record.getMessage()

    def test_a_key_in_the_urls_query_stays_out_of_messages_and_the_repr(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """A USMAN keyed by its path's query (``?api_key=…``, docs/usman.md): the key is sent, but a
        refusal's message and the client's repr show ``?***`` instead. Before, both quoted it, and a
        Celery worker logs a failed task's message as it is (the runner scrubs its own lines only):
        this test fails there."""
        key = "Kq7QueryKeyValue"
        server.queue(status(404))
        options = {"path": f"{PATH}?api_key={key}"}
        with client_for(server, sleeps, **options) as client, pytest.raises(UsmanRefused) as caught:
            client.sso_ids_by_emails(COMPANY, [NUR])
        assert server.requests[0].path == f"{PATH}?api_key={key}"  # sent as written: USMAN needs it
        assert key not in str(caught.value)
        assert key not in repr(client)
        assert "?***" in str(caught.value)

    def test_no_logger_sees_a_key_password_or_token_at_debug(
        self, server: UsmanServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Every logger at DEBUG (as a host application may turn them on) over an answer, a retried 503
        and a refusal: no record holds the query's key, the base URL's password or the token. Before,
        httpx logged each request's URL whole at INFO (``HTTP Request: POST http://u:pw@…?api_key=…``):
        this test fails there. A host's own httpx requests keep their URLs as they are."""
        key, password = "Kq7QueryKeyValue", "Pw9UserInfoPass"
        caplog.set_level(logging.DEBUG)
        base = server.url.replace("http://", f"http://usman:{password}@")
        server.auth_header, server.auth_scheme = "X-Api-Key", ""  # httpx sends the user info as Basic
        server.queue(answer, status(503), answer, status(404))
        options = {"base_url": base, "path": f"{PATH}?api_key={key}", "auth_header": "X-Api-Key"}
        with client_for(server, sleeps, auth_scheme="", **options) as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
            assert client.sso_ids_by_emails(COMPANY, ["agus.1@acme.example"]) == {
                "agus.1@acme.example": "sso-agus"
            }
            with pytest.raises(UsmanRefused):
                client.sso_ids_by_emails(COMPANY, ["dewi@acme.example"])
        assert key in server.requests[0].path  # sent: USMAN needs it
        shown = [logging.Formatter().format(record) for record in caplog.records]
        assert any("HTTP Request: POST" in line and "?***" in line for line in shown), shown
        for line in shown:
            for secret in (key, password, TOKEN):
                assert secret not in line
        with httpx.Client() as other:  # a host's own request: its URL is the host's to log
            other.post(f"{server.url}/elsewhere?page=2")
        assert f"{server.url}/elsewhere?page=2" in caplog.text

    def test_the_configs_repr_hides_a_password_or_key_in_its_urls(self) -> None:
        """``UsmanConfig``'s repr (attrs') showed ``base_url`` and ``path`` as they are: a password in
        the base URL, or a key in either's query, was in any log line or traceback that printed it.
        This test fails there."""
        config = UsmanConfig(
            base_url="https://ops:Pw7UsmanBase@usman.internal/",
            path=f"{PATH}?api_key=Kq7PathKey",
            token=TOKEN,
            auth_header="X-Api-Key",
        )
        shown = repr(config)
        for secret in ("Pw7UsmanBase", "Kq7PathKey", TOKEN):
            assert secret not in shown
        assert "usman.internal" in shown
        assert f"{PATH}?***" in shown

    def test_credentials_in_the_base_url_stay_out_of_messages(self, sleeps: list[float]) -> None:
        """A base URL with userinfo is reported without it."""
        config = UsmanConfig(base_url=f"http://ops:{TOKEN}@127.0.0.1:{closed_port()}", max_attempts=1)
        with UsmanClient(config, sleep=sleeps.append) as client, pytest.raises(UsmanUnavailable) as caught:
            client.sso_ids_by_emails(COMPANY, ["nur.4@acme.example"])
        assert TOKEN not in str(caught.value)
        assert TOKEN not in repr(client)


class TestTheTestServer:
    @pytest.mark.parametrize("code", [204, 205, 304])
    def test_an_answer_without_content_sends_none(self, server: UsmanServer, code: int) -> None:
        """HTTP gives 204, 205 and 304 no content, and 204 and 304 no Content-Length: on the wire the
        answer ends with its headers, and the connection's next request gets a clean answer. Before,
        ``status`` sent a JSON body after them (this test fails there)."""
        server.queue(status(code))
        host, port = server.url.removeprefix("http://").split(":")
        request = (
            f"POST {PATH} HTTP/1.1\r\nHost: usman\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{payload}"
        )
        payload = json.dumps({"company_sso_id": COMPANY, "emails": [NUR]})
        wire = request.format(length=len(payload), payload=payload).encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock, sock.makefile("rb") as wire_in:
            sock.sendall(wire)
            head, content = _answer_off(wire_in)
            sock.sendall(wire)
            second_head, second_content = _answer_off(wire_in)
        assert head[0].startswith(f"HTTP/1.1 {code} ".encode())
        assert content == b""
        lengths = [line for line in head if line.lower().startswith(b"content-length:")]
        assert lengths == ([b"Content-Length: 0"] if code == 205 else [])
        # Bytes sent after the first answer's end would be read here, before the second's status line.
        assert second_head[0].startswith(b"HTTP/1.1 200 "), second_head
        assert json.loads(second_content) == {"data": [{"email": NUR, "sso_id": "sso-nur"}]}


def _answer_off(wire_in: BinaryIO) -> tuple[list[bytes], bytes]:
    """One answer off the connection: its status and header lines, and as many bytes of content as
    its Content-Length says (none without one)."""
    lines: list[bytes] = []
    while line := wire_in.readline().rstrip(b"\r\n"):
        lines.append(line)
    sizes = [int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")]
    return lines, wire_in.read(sizes[0] if sizes else 0)


class TestLifecycle:
    def test_leaving_the_with_block_closes_the_pool(self, server: UsmanServer, sleeps: list[float]) -> None:
        """The client is a context manager that closes its connections on exit."""
        with client_for(server, sleeps) as client:
            assert not client.closed
        assert client.closed


class TestTlsContext:
    def test_clients_share_one_context_per_ca_location(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The CA bundle is parsed once per process and CA location, not once per client (a job,
        a worker task, a ``--workers`` process each make one): three clients build one context,
        and a changed ``SSL_CERT_FILE`` gets a context of its own, built while it is set."""
        built: list[str | None] = []

        def create_ssl_context(**options: Any) -> Any:
            built.append(os.environ.get("SSL_CERT_FILE"))
            return real(**options)

        real = httpx.create_ssl_context
        monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        usman._context_for.cache_clear()
        config = UsmanConfig(base_url="https://usman.example")
        try:
            for _ in range(3):
                UsmanClient(config).close()
            assert built == [None]
            monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
            for _ in range(2):
                UsmanClient(config).close()
            assert built == [None, certifi.where()]
        finally:
            usman._context_for.cache_clear()  # no context of the patched builder outlives the test


class TestConfig:
    def test_from_env_reads_the_documented_variables(self) -> None:
        """Every CRM_AUDIT_USMAN_* variable lands in its field; unset ones keep their defaults."""
        config = UsmanConfig.from_env(
            {
                "CRM_AUDIT_USMAN_BASE_URL": "https://usman.internal",
                "CRM_AUDIT_USMAN_TOKEN": TOKEN,
                "CRM_AUDIT_USMAN_AUTH_HEADER": "X-Api-Key",
                "CRM_AUDIT_USMAN_AUTH_SCHEME": "",
                "CRM_AUDIT_USMAN_READ_TIMEOUT": "1.5",
                "CRM_AUDIT_USMAN_MAX_EMAILS": "50",
                "UNRELATED": "x",
            }
        )
        assert config == UsmanConfig(
            base_url="https://usman.internal",
            token=TOKEN,
            auth_header="X-Api-Key",
            auth_scheme="",
            read_timeout=1.5,
            max_emails_per_request=50,
        )

    def test_from_env_needs_a_base_url(self) -> None:
        """Without CRM_AUDIT_USMAN_BASE_URL there is nothing to talk to."""
        with pytest.raises(ValueError, match="BASE_URL"):
            UsmanConfig.from_env({"CRM_AUDIT_USMAN_TOKEN": TOKEN})

    @pytest.mark.parametrize(
        "bad", [{"max_emails_per_request": 0}, {"max_attempts": 0}, {"read_timeout": 0.0}]
    )
    def test_nonsensical_limits_are_refused(self, bad: dict[str, Any]) -> None:
        """A chunk of zero emails, zero attempts or a zero timeout is a configuration error."""
        with pytest.raises(ValueError, match="must be"):
            UsmanConfig(base_url="http://127.0.0.1", **bad)

    @pytest.mark.parametrize("auth_header", ["Authorization", "authorization"])
    def test_user_info_that_would_replace_the_token_is_refused(
        self, server: UsmanServer, auth_header: str
    ) -> None:
        """httpx sends a base URL's ``user:password@`` as Basic auth in ``Authorization``, in place of
        the Bearer token: USMAN answered 401 to every lookup. Now ``UnusableUsmanSetting`` when built,
        naming neither the password nor the token. Before, the config was built and the lookup refused
        (this test fails there)."""
        base = server.url.replace("http://", "http://ops:Pw5UserInfo@")
        with pytest.raises(UnusableUsmanSetting, match="Basic auth in place of the token") as caught:
            UsmanConfig(base_url=base, token=TOKEN, path=PATH, auth_header=auth_header)
        assert "Pw5UserInfo" not in str(caught.value)
        assert TOKEN not in str(caught.value)

    def test_user_info_beside_a_token_in_another_header_is_sent_as_basic_auth(
        self, server: UsmanServer, sleeps: list[float]
    ) -> None:
        """The token in ``X-Api-Key``: the user info goes as Basic auth beside it (a proxy before
        USMAN may ask for it), as before; both reach the server."""
        server.auth_header, server.auth_scheme = "X-Api-Key", ""
        base = server.url.replace("http://", "http://ops:Pw5UserInfo@")
        with client_for(server, sleeps, base_url=base, auth_header="X-Api-Key", auth_scheme="") as client:
            assert client.sso_ids_by_emails(COMPANY, [NUR]) == {NUR: "sso-nur"}
        [request] = server.requests
        assert request.headers["x-api-key"] == TOKEN
        assert request.headers["authorization"].startswith("Basic ")

    @pytest.mark.parametrize("tail", ["/api?api_key=Kq7BaseKey", "?v=2", "/api?", "/api#Kq7BaseKey", "#"])
    def test_a_base_url_with_a_query_or_fragment_is_refused(self, server: UsmanServer, tail: str) -> None:
        """httpx appends the path to the base URL's text, query included: ``…/api?api_key=K`` asked
        ``/api?api_key=K/api/v1/users/sso-ids`` (the key with the path in it, to USMAN's root). Now
        ``UnusableUsmanSetting`` when built, pointing at ``path`` for a query, never quoting the URL.
        Before, the config was built and the request went to the wrong path (this test fails there)."""
        with pytest.raises(UnusableUsmanSetting, match="query or fragment") as caught:
            UsmanConfig(base_url=server.url + tail, token=TOKEN, path=PATH)
        assert "Kq7BaseKey" not in str(caught.value)
        assert "CRM_AUDIT_USMAN_PATH" in str(caught.value)


class TestAnHttpxWithAnotherLayout:
    def test_no_pool_to_bound_is_said_once_and_does_not_stop_the_client(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The headers' deadline wraps httpx's private connection pools: an httpx that keeps them
        elsewhere leaves each read bounded by read_timeout only. That is logged as a warning (a
        silent loss of the bound otherwise), and the client is still built and usable."""
        from crm_audit_adapters import usman_transport

        assert usman_transport.bound_by_deadline(object()) == 0  # type: ignore[arg-type]
        monkeypatch.setattr(usman_transport, "bound_by_deadline", lambda client: 0)
        with caplog.at_level(logging.WARNING, logger="crm_audit_adapters.usman"):
            client = UsmanClient(UsmanConfig("http://127.0.0.1:9"))
        client.close()
        [warning] = [r for r in caplog.records if "answer deadline not applied" in r.getMessage()]
        assert warning.levelno == logging.WARNING
