"""Endpoints of the real backends, and the rule that a missing service never hides under CI.

Defaults come from tools/services/services.toml (the same ports as docker-compose.yml); each can
be overridden with an environment variable (FLOWCRAFT_REDIS_URL, ...). A test that needs a service
asks for its fixture; when the service does not answer, the test is skipped with the service's
name and the command that starts it, and under CI=true it fails instead.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

#: The conformance suites' fixtures and options (flowcraft-core's pytest plugins): blueprints
#: and Worlds.
pytest_plugins = ["flowcraft.core.testing.plugin", "flowcraft.core.testing.world_plugin"]

if TYPE_CHECKING:  # used by the flowcraft-rabbitmq block at the end
    from flowcraft.core.redis import RedisCoordinationStore
    from flowcraft.rabbitmq import PostgresContext, RabbitMqAdapter

ROOT = Path(__file__).resolve().parents[1]
CATALOG: dict[str, dict[str, Any]] = tomllib.loads(
    (ROOT / "tools" / "services" / "services.toml").read_text()
)


#: Folders whose tests keep one parallel process busy between them (``--dist loadgroup``):
#: their emulators serve one request at a time on one core (moto; the Cosmos server; Kafka
#: and Cassandra's JVMs), so spreading their tests over processes only makes each test wait
#: longer for the same server, up to its timeouts. Every other test runs wherever is free.
SERIAL_GROUPS = {"sqs": "moto", "aws_world": "moto", "azure": "azure", "kafka": "kafka"}


#: Folders whose tests run in the serial part after the parallel one (marked ``exclusive``):
#: moto is single-threaded and CPU-bound; beside parallel tests on 2 cores it starved and
#: SQS tests timed out.
ALONE = frozenset({"sqs", "aws_world"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of each emulator-bound folder in one xdist group."""
    here = Path(__file__).resolve().parent
    for item in items:
        try:
            folder = Path(item.path).resolve().relative_to(here).parts[0]
        except (ValueError, IndexError):
            continue
        group = SERIAL_GROUPS.get(folder)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        if folder in ALONE:
            item.add_marker(pytest.mark.exclusive)


def _setting(service: str, key: str) -> str:
    env = f"FLOWCRAFT_{service.upper()}_{key.upper()}"
    return os.environ.get(env, str(CATALOG[service][key]))


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under CI=true) unless the service answers on host:port."""
    if _port_open(host, port):
        return
    message = (
        f"service {name!r} is not reachable on {host}:{port}; "
        f"start it with: python tools/services start --only {name}"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("redis", "127.0.0.1", int(CATALOG["redis"]["port"]))
    return _setting("redis", "url")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service("postgres", "127.0.0.1", int(CATALOG["postgres"]["port"]))
    return _setting("postgres", "url")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require_service("rabbitmq", "127.0.0.1", int(CATALOG["rabbitmq"]["port"]))
    return _setting("rabbitmq", "url")


@pytest.fixture(scope="session")
def aws_endpoint_url() -> str:
    """The moto server that answers SQS, DynamoDB and S3."""
    require_service("moto", "127.0.0.1", int(CATALOG["moto"]["port"]))
    return _setting("moto", "url")


@pytest.fixture(scope="session")
def aws_session(aws_endpoint_url: str) -> boto3.session.Session:
    """A boto3 session with the emulator's region and test credentials."""
    return boto3.session.Session(
        region_name=_setting("moto", "region"),
        aws_access_key_id=_setting("moto", "access_key_id"),
        aws_secret_access_key=_setting("moto", "secret_access_key"),
    )


@pytest.fixture(scope="session")
def azure_queue_connection_string() -> str:
    require_service("azurite", "127.0.0.1", int(CATALOG["azurite"]["port"]))
    account = CATALOG["azurite"]["account"]
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};"
        f"AccountKey={_setting('azurite', 'account_key')};"
        f"QueueEndpoint={_setting('azurite', 'queue_url')};"
    )


@pytest.fixture(scope="session")
def cosmos_endpoint() -> dict[str, str]:
    """``url``, ``key`` and ``ca_file`` (the private CA the server's certificate is signed by)."""
    require_service("cosmos", "127.0.0.1", int(CATALOG["cosmos"]["port"]))
    default_ca = ROOT / ".services" / "cosmos" / "tls" / "ca.pem"
    return {
        "url": _setting("cosmos", "url"),
        "key": _setting("cosmos", "key"),
        "ca_file": os.environ.get("FLOWCRAFT_COSMOS_CA_FILE", str(default_ca)),
    }


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    require_service("kafka", "127.0.0.1", int(CATALOG["kafka"]["port"]))
    return _setting("kafka", "bootstrap")


@pytest.fixture(scope="session")
def cassandra_contact() -> tuple[str, int]:
    port = int(os.environ.get("FLOWCRAFT_CASSANDRA_PORT", CATALOG["cassandra"]["port"]))
    require_service("cassandra", "127.0.0.1", port)
    return ("127.0.0.1", port)


# --------------------------------------------------------------------------------------------
# flowcraft-rabbitmq port tests (tests-integration/rabbitmq/): one namespace per test.
# Every test gets its own prefix (queues ``{ns}.jobs`` ..., tables ``{ns}_runs`` ..., Redis keys
# ``{ns}:*``) and everything is removed afterwards, so tests can run in parallel.
# --------------------------------------------------------------------------------------------


@pytest.fixture
def namespace() -> str:
    """A fresh prefix for queue, table and key names."""
    import uuid

    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pg_store(postgres_url: str, namespace: str) -> AsyncIterator[PostgresContext]:
    """A PostgresContext on fresh tables, dropped afterwards."""
    from flowcraft.rabbitmq import PostgresContext

    store = PostgresContext(postgres_url, table_prefix=namespace, max_size=4)
    await store.ensure_schema()
    yield store
    await store.drop_schema()
    await store.close()


@pytest.fixture
async def redis_store(redis_url: str, namespace: str) -> AsyncIterator[RedisCoordinationStore]:
    """A RedisCoordinationStore on a fresh prefix, its keys deleted afterwards."""
    from flowcraft.core.redis import RedisCoordinationStore

    store = RedisCoordinationStore(redis_url, prefix=namespace)
    yield store
    client = store._client  # test cleanup only: the product never scans
    keys = [key async for key in client.scan_iter(f"{namespace}:*")]
    if keys:
        await client.delete(*keys)
    await store.close()


@pytest.fixture
async def queue(rabbitmq_url: str, namespace: str) -> AsyncIterator[RabbitMqAdapter]:
    """A RabbitMqAdapter on fresh queues, deleted afterwards."""
    from flowcraft.rabbitmq import RabbitMqAdapter

    adapter = RabbitMqAdapter(rabbitmq_url, prefix=namespace, connect_timeout=30.0)
    yield adapter
    await adapter.close()
    await adapter.delete_queues()


# ---------------------------------------------------------------- end of flowcraft-rabbitmq block
