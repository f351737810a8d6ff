"""The SDK clients' HTTP sessions: proxies from the environment only when it names one."""

from __future__ import annotations

from typing import Any

import pytest
from flowcraft.azure._clients import cosmos_client, queue_client

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "WSS_PROXY", "ALL_PROXY")
_AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def _trust_env(*, queue: bool) -> bool:
    """Whether the client's aiohttp session reads the environment on every request."""
    client: Any
    if queue:
        client = queue_client("jobs", connection_string=_AZURITE)
        transport = client._client._client._pipeline._transport
        await transport.open()
    else:
        client = cosmos_client(url="https://127.0.0.1:1", key="a2V5")
        transport = client.client_connection.pipeline_client._pipeline._transport
    try:
        return bool(transport.session.trust_env)
    finally:
        await client.close()


@pytest.mark.usefixtures("no_proxy_settings")
@pytest.mark.parametrize("queue", [True, False], ids=["queue", "cosmos"])
async def test_without_proxy_settings_requests_skip_the_per_request_lookups(queue: bool) -> None:
    assert await _trust_env(queue=queue) is False


@pytest.mark.usefixtures("no_proxy_settings")
@pytest.mark.parametrize("queue", [True, False], ids=["queue", "cosmos"])
async def test_a_proxy_in_the_environment_is_honoured(
    queue: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert await _trust_env(queue=queue) is True
