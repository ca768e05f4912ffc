"""Collections that predate the registry and catalog show up after `visionnet catalog-rebuild`."""

from __future__ import annotations

import subprocess

import requests
from pymilvus import DataType, MilvusClient

from tests.conftest import VISIONNET, Stack
from tests.helpers import with_milvus


def test_a_collection_made_before_the_catalog_is_listed_after_a_rebuild(stack: Stack) -> None:
    name = "old_style"

    def make(client: MilvusClient) -> None:
        # The schema of VisionNet before width, height and label were stored.
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
        schema.add_field("path", DataType.VARCHAR, max_length=4096)
        schema.add_field("size", DataType.INT64)
        schema.add_field("model", DataType.VARCHAR, max_length=512)
        schema.add_field("indexed_at", DataType.INT64)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
        client.create_collection(
            name, schema=schema, index_params=index, properties={"visionnet.model": "old:model"}
        )
        rows = [
            {
                "id": f"{i:064x}",
                "vector": [1.0, float(i), 0.5, 0.25],
                "path": f"/photos/{i}.jpg",
                "size": 1000 + i,
                "model": "old:model",
                "indexed_at": 1_700_000_000 + i,
            }
            for i in range(1, 6)
        ]
        client.insert(name, rows)
        client.flush(name)

    with_milvus(stack.milvus_uri, make)
    assert requests.get(f"{stack.base}/api/v1/collections/{name}", timeout=10).status_code == 404

    out = subprocess.run(
        [VISIONNET, "catalog-rebuild", name],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{name}: 5 images" in out.stdout

    entry = requests.get(f"{stack.base}/api/v1/collections/{name}", timeout=10).json()
    assert (entry["count"], entry["model"], entry["dim"]) == (5, "old:model", 4)
    image = requests.get(f"{stack.base}/api/v1/images/{3:064x}", timeout=10).json()
    assert (image["path"], image["size"], image["collection"]) == ("/photos/3.jpg", 1003, name)
    assert image["width"] is None and image["label"] is None  # not stored back then
