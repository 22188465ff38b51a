"""Redaction by parsing: hostile DSNs and URIs never show a fragment of their secret."""

from __future__ import annotations

import logging

import pytest

from crm_audit_adapters.redaction import UNPARSEABLE, ScrubbingFilter, redact, scrub, secret_fragments

# (DSN or URI, the secret inside it). Every secret is distinctive so that any 4-character piece of it
# showing up in an output is a leak, not a coincidence.
HOSTILE = [
    ("postgresql://ro:Kx9vQ7zR@crm-db:5432/crm", "Kx9vQ7zR"),
    ("postgresql://ro:Kx9@vQ7zR@crm-db/crm", "Kx9@vQ7zR"),
    ("postgresql://ro:Kx9:v/Q?7#zR@crm-db/crm", "Kx9:v/Q?7#zR"),
    ("postgresql://ro:p%ZZKx9vQ7zR@crm-db/crm", "p%ZZKx9vQ7zR"),
    ("postgresql://ro:Kx9%40vQ7zR@crm-db/crm", "Kx9@vQ7zR"),
    ("postgresql://crm-db/crm?user=ro&password=Kx9vQ7zR&sslmode=require", "Kx9vQ7zR"),
    ("postgresql://crm-db/crm?sslpassword=Kx9v&Q7zR&sslmode=require", "Kx9v&Q7zR"),
    ("postgresql://ro@crm-db/crm?application_name=a@b&password=Kx9vQ7zR", "Kx9vQ7zR"),
    ("host=crm-db user=ro password=Kx9vQ7zR dbname=crm", "Kx9vQ7zR"),
    ("host=crm-db password = 'Kx9v Q7zR' dbname=crm", "Kx9v Q7zR"),
    (r"host=crm-db password='Kx9v\'Q7zR tail9W' dbname=crm", r"Kx9v'Q7zR tail9W"),
    (r"host=crm-db password=Kx9v\ Q7zR dbname=crm", "Kx9v Q7zR"),
    ("host=crm-db password='Kx9vQ7zR dbname=crm", "Kx9vQ7zR"),  # unterminated quote
    ("host=crm-db password=Kx9v Q7zRsecretpass dbname=crm", "Q7zRsecretpass"),  # missing "=" after it
    ("host=crm-db password", "crm-db"),  # not even a pair: nothing of it is shown
    ("dbname='postgresql://ro:Kx9vQ7zR@crm-db/crm' host=x", "Kx9vQ7zR"),
    ("dbname='host=crm-db password=Kx9vQ7zR'", "Kx9vQ7zR"),
    ("Kx9vQ7zR", "Kx9vQ7zR"),  # a bare password pasted as the DSN
    ("mongodb://cdp:Kx9vQ7zR@cdp-db:27017/?authSource=admin", "Kx9vQ7zR"),
    ("mongodb://cdp:Kx9v@Q7zR@a:1,b:2/?replicaSet=rs0", "Kx9v@Q7zR"),
    ("mongodb+srv://cdp:Kx9vQ7zR@cluster.example.net/cdp?retryWrites=true", "Kx9vQ7zR"),
    (
        "mongodb://AKIAEXAMPLE:Wq8eRt5y@cdp-db/?authMechanism=MONGODB-AWS"
        "&authMechanismProperties=AWS_SESSION_TOKEN:Zt4uKx9vQ7zR",
        "Zt4uKx9vQ7zR",
    ),
    (
        "mongodb://cdp-db/?authMechanism=MONGODB-AWS"
        "&authMechanismProperties=AWS_SESSION_TOKEN%3AZt4uKx9vQ7zR%2CSERVICE_NAME%3Amongodb",
        "Zt4uKx9vQ7zR",
    ),
    ("mongodb://cdp-db/?tls=true&tlsCertificateKeyFilePassword=Kx9vQ7zR", "Kx9vQ7zR"),
    ("https://Kx9vQ7zR@usman.internal/api", "Kx9vQ7zR"),
    ("https://usman.internal/api?token=Kx9vQ7zR", "Kx9vQ7zR"),
    ("sentinel://:Kx9vQ7zR@h1:26379;sentinel://:Wq8eRt5y@h2:26379", "Kx9vQ7zR"),
    ("sentinel://:Kx9vQ7zR@h1:26379;sentinel://:Wq8eRt5y@h2:26379", "Wq8eRt5y"),
]
# One password that holds ";redis://" (kombu's failover separator): no piece of it is shown as a host,
# a port or a user. (value, a piece of its password)
FAILOVER_LOOKALIKES = [
    ("redis://:Kx9v;redis://Q7zR@h/0", "Kx9v"),
    ("redis://:Kx9v;redis://Q7zR@h/0", "Q7zR"),
    ("redis://u:Kx9vQ7zR;redis://h1;redis://v:Wq8e@h/0", "Kx9vQ7zR"),
    ("redis://u:1234;redis://Wq8e:Rt5y@h/0", "1234"),
    ("redis://u:Kx9v@h1;redis://Q7zR@h/0", "Q7zR"),
]


def _pieces(secret: str, size: int = 4) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)} or {secret}


def _leaks(text: str, secret: str) -> set[str]:
    return {piece for piece in _pieces(secret) if piece in text}


class TestRedact:
    @pytest.mark.parametrize(("value", "secret"), HOSTILE + FAILOVER_LOOKALIKES)
    def test_no_fragment_of_the_secret_survives(self, value: str, secret: str) -> None:
        """The redacted form of a hostile DSN or URI holds no 4-character piece of its secret."""
        shown = redact(value)
        assert shown is not None
        assert not _leaks(shown, secret), shown

    @pytest.mark.parametrize(("value", "secret"), HOSTILE)
    def test_scrub_removes_every_spelling_from_free_text(self, value: str, secret: str) -> None:
        """A driver message quoting the DSN, its secret or a piece a parser stopped at is scrubbed."""
        pieces = " ".join(sorted(secret_fragments(value)))
        message = f'connect failed for {value}: missing "=" after "{secret}" near {pieces}'
        cleaned = scrub(message, [value])
        assert not _leaks(cleaned, secret), cleaned

    def test_a_password_piece_libpq_reads_as_a_host_name_is_scrubbed(self) -> None:
        """libpq ends the user info at the first '@': its host error quotes the rest of the password."""
        value = "postgresql://ro:Kx9@vQ7zR@crm-db/crm"
        message = 'failed to resolve host "vQ7zR@crm-db": [Errno -2] Name or service not known'
        assert "vQ7z" not in scrub(message, [value])

    def test_a_token_in_free_text_is_masked_not_called_a_connection_string(self) -> None:
        """A USMAN token quoted by a message read "<redacted: not a parseable connection string>", the
        marker of a DSN that does not parse; a token is no DSN: it shows as the mask."""
        message = "USMAN refused the header Bearer Kx9vQ7zR-token (401)"
        assert scrub(message, ["Kx9vQ7zR-token"]) == "USMAN refused the header Bearer *** (401)"

    @pytest.mark.parametrize("token", ["e", "x", "ab", "-"])
    def test_a_secret_of_one_or_two_characters_is_masked_where_it_stands_alone(self, token: str) -> None:
        """A token "e" made every "e" of every error line the 45-character marker: the line unreadable.
        It is masked where it stands alone, as a header's or a query's value quotes it; a word that
        holds its characters is left as it is."""
        message = "the runner's settings: page_size must be in [1, 10000]"
        assert scrub(message, [token]) == message
        quoted = f"sent Authorization: Bearer {token}; ?token={token}&page=2"
        cleaned = scrub(quoted, [token])
        assert cleaned == "sent Authorization: Bearer ***; ?token=***&page=2"

    def test_a_url_without_credentials_is_shown_as_it_is(self) -> None:
        """Nothing secret in http://usman.internal:8099: a message naming it keeps it readable."""
        message = "USMAN at http://usman.internal:8099/api/v1/users/sso-ids answered 401"
        assert scrub(message, ["http://usman.internal:8099"]) == message

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            ("postgresql://ro:pw@crm-db:5432/crm", "postgresql://ro:***@crm-db:5432/crm"),
            ("postgresql://ro@crm-db/crm", "postgresql://ro@crm-db/crm"),
            ("host=crm-db user=ro password='a b' dbname=crm", "host=crm-db user=ro password=*** dbname=crm"),
            (
                "mongodb://cdp-db:27017/?serverSelectionTimeoutMS=500",
                "mongodb://cdp-db:27017/?serverSelectionTimeoutMS=500",
            ),
            (
                "mongodb://u:p@h/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:t",
                "mongodb://u:***@h/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***",
            ),
            ("mongomock://", "mongomock://"),
            ("https://usman.internal", "https://usman.internal"),
            (
                "sentinel://:a@h1:26379;sentinel://:b@h2:26379",
                "sentinel://:***@h1:26379;sentinel://:***@h2:26379",
            ),
            ("amqp://a:x@h1//;amqp://b:y@h2//", "amqp://a:***@h1//;amqp://b:***@h2//"),
            ("redis://h1:6379/0;redis://h2:6379/0", "redis://h1:6379/0;redis://h2:6379/0"),
        ],
    )
    def test_keeps_what_an_operator_needs(self, value: str, shown: str) -> None:
        """Hosts, ports, databases, users and harmless options stay readable."""
        assert redact(value) == shown

    def test_an_unparseable_value_is_hidden_whole(self) -> None:
        """A value whose secret's end cannot be known is replaced by a fixed marker."""
        assert redact("host=x password='open") == UNPARSEABLE

    def test_empty_values_pass_through(self) -> None:
        """None and "" mean "not set" and are shown as such."""
        assert redact(None) is None
        assert redact("") == ""


class TestScrubbingFilter:
    def test_log_records_and_tracebacks_are_scrubbed(self, caplog: pytest.LogCaptureFixture) -> None:
        """A log line and its traceback that quote the DSN reach the handlers without its password."""
        dsn = "postgresql://ro:Kx9vQ7zR@crm-db/crm"
        logger = logging.getLogger("test.redaction")
        logger.addFilter(ScrubbingFilter([dsn]))
        try:
            with caplog.at_level(logging.INFO, logger="test.redaction"):
                try:
                    raise RuntimeError(f"cannot reach {dsn}")
                except RuntimeError:
                    logger.exception("connect to %s failed", dsn)
        finally:
            logger.filters.clear()
        text = caplog.text
        assert "crm-db" in text
        assert not _leaks(text, "Kx9vQ7zR"), text
