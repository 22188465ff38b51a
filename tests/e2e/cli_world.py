"""An account behind real adapters for the CLI: the CRM corpus in PostgreSQL, the CDP in mongomock,
USMAN as a real local HTTP server — plus the in-memory clean run to compare the CLI against."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from click.testing import CliRunner, Result

from crm_audit_adapters.cli import Overrides, cli
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, company_sso_id, contact_docs, sso_docs
from support.usman_server import TOKEN, UsmanServer

TENANT = "acme"
COMPANY = company_sso_id(TENANT)


def seed_contacts(client: Any, docs: Sequence[dict[str, Any]] | None = None) -> None:
    contacts = client["cdp"]["contacts"]
    for doc in contact_docs(TENANT) if docs is None else docs:
        created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
        contacts.insert_one({**doc, "_id": ObjectId(doc["_id"]), "created_at": created})


def usman_directory() -> dict[str, dict[str, str]]:
    return {COMPANY: {d["email"]: d["sso_id"] for d in sso_docs(TENANT)}}


class Cli:
    """Invokes ``crm-audit-migrate`` in-process with one shared mongomock client."""

    def __init__(self, env: dict[str, str], overrides: Overrides) -> None:
        self.env = env
        self.overrides = overrides
        self.runner = CliRunner()

    def __call__(self, *args: str, **env: str) -> Result:
        return self.runner.invoke(cli, list(args), obj=self.overrides, env={**self.env, **env})


def make_cli(crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient, **env: str) -> Cli:
    base = {
        "CRM_AUDIT_DATABASE_URL": crm_dsn,
        "CRM_AUDIT_MONGO_URI": "mongomock://",
        "CRM_AUDIT_USMAN_BASE_URL": usman.url,
        "CRM_AUDIT_USMAN_TOKEN": TOKEN,
        "CRM_AUDIT_ENABLED_COMPANIES": COMPANY,
        "CRM_AUDIT_TENANTS": f"{COMPANY}={TENANT}",
        "CRM_AUDIT_SETTINGS": "",
    }
    return Cli({**base, **env}, Overrides(mongo_client=client))


def clean_world() -> World:
    """The same account run in memory: what the CLI over real adapters must reproduce."""
    world = World(TENANT)
    world.trigger()
    world.run(settings=RunSettings(halt_threshold=1.0))
    return world


def running_usman() -> Iterator[UsmanServer]:
    with UsmanServer(directory=usman_directory()) as server:
        yield server


# The fixtures of the files that drive the CLI in this process, shared as ``usman, client, run_cli =
# cli_world.usman, cli_world.client, cli_world.run_cli`` (a file that wants another setup defines its own).


@pytest.fixture(scope="module", name="usman")
def usman_fixture() -> Iterator[UsmanServer]:
    """A USMAN server answering the corpus's directory, for one test file."""
    yield from running_usman()


@pytest.fixture(name="client")
def client_fixture() -> mongomock.MongoClient:
    """The CDP: an empty mongomock client, a new one each test."""
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture(name="run_cli")
def run_cli_fixture(crm_dsn: str, usman: UsmanServer, client: mongomock.MongoClient) -> Cli:
    """The CLI over the corpus's PostgreSQL, ``usman`` and ``client``: indexes up, contacts seeded."""
    cli = make_cli(crm_dsn, usman, client)
    assert cli("indexes", "up").exit_code == 0
    seed_contacts(client)
    return cli


usman, client, run_cli = usman_fixture, client_fixture, run_cli_fixture
