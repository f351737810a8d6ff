"""The Cosmos DB SQL-API server answers a real round trip with azure-cosmos, over verified TLS.

azure-cosmos turns certificate verification off by itself for 127.0.0.1/localhost unless an
``ssl_config`` is given; with one, ``connection_verify`` names the CA bundle that is enforced.
The second test proves verification really happens: a client that trusts another CA is refused.
"""

import uuid

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.documents import SSLConfiguration


def _client(endpoint: dict[str, str], ca_file: str) -> CosmosClient:
    return CosmosClient(
        endpoint["url"],
        credential=endpoint["key"],
        connection_verify=ca_file,
        ssl_config=SSLConfiguration(),
    )


def test_create_patch_query(cosmos_endpoint: dict[str, str]) -> None:
    client = _client(cosmos_endpoint, cosmos_endpoint["ca_file"])
    database = client.create_database_if_not_exists(f"smoke-{uuid.uuid4().hex[:12]}")
    try:
        container = database.create_container_if_not_exists(
            id="runs", partition_key=PartitionKey(path="/run_id")
        )
        container.create_item({"id": "r1", "run_id": "r1", "status": "running"})
        container.patch_item(
            item="r1",
            partition_key="r1",
            patch_operations=[{"op": "set", "path": "/status", "value": "completed"}],
        )
        rows = list(
            container.query_items(
                "SELECT * FROM c WHERE c.run_id = @id",
                parameters=[{"name": "@id", "value": "r1"}],
                partition_key="r1",
            )
        )
        assert [row["status"] for row in rows] == ["completed"]
    finally:
        client.delete_database(database)


def test_untrusted_certificate_is_refused(cosmos_endpoint: dict[str, str]) -> None:
    import certifi

    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        _client(cosmos_endpoint, certifi.where())
