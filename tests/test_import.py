"""``visionnet import``: a Milvus Lite collection moves to the real server without re-embedding.

Indexed on the Lite stack, exported through its API, imported with the CLI into
the server stack (its settings: its Milvus and its Redis): the same rows and
the same top-10 through both stacks' APIs; a re-run changes nothing; a file of
another model or dimension is refused; and Milvus Lite's one writer is kept.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import VISIONNET, Stack
from tests.helpers import with_milvus, write_images
from visionnet.client import Client

SOURCE, TARGET = "import_src", "import_dst"
FIELDS = ["id", "path", "size", "width", "height", "indexed_at", "label", "label_score", "model"]


def import_file(stack: Stack, file: Path, collection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VISIONNET, "import", str(file), "--collection", collection],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def stored_rows(stack: Stack, collection: str) -> dict[str, dict[str, Any]]:
    def read(client: Any) -> list[dict[str, Any]]:
        client.load_collection(collection)
        out = [*FIELDS, "vector"]
        return list(client.query(collection, filter='id != ""', output_fields=out, limit=16384))

    return {str(r["id"]): r for r in with_milvus(stack.milvus_uri, read)}


def top10(stack: Stack, collection: str, image_id: str) -> list[tuple[str, float]]:
    client = Client(stack.base)
    job = client.wait(client.search_by_id(image_id, collection, k=10), timeout_s=120)
    assert job["state"] == "succeeded", job
    return [(h["id"], h["score"]) for h in job["result"]["hits"]]


@pytest.fixture(scope="module")
def exported(lite_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = lite_stack.root / "import"
    write_images(folder, range(9800, 9824))
    client = Client(lite_stack.base)
    job = client.wait(client.index(folder, SOURCE), timeout_s=300)
    assert job["state"] == "succeeded" and job["result"]["indexed"] == 24, job
    export = client.wait(client.export(SOURCE), timeout_s=120)
    assert export["state"] == "succeeded", export
    out = tmp_path_factory.mktemp("import") / "export.parquet"
    client.download(export["id"], out)
    return out


@pytest.fixture(scope="module")
def imported(server_stack: Stack, exported: Path) -> subprocess.CompletedProcess[str]:
    """The export imported into the server stack (its settings: its Milvus, its Redis)."""
    return import_file(server_stack, exported, TARGET)


def test_a_lite_collection_moves_to_the_server_with_the_same_rows_and_top10(
    lite_stack: Stack, server_stack: Stack, exported: Path, imported: Any
) -> None:
    assert imported.returncode == 0, imported.stderr
    assert "24 new, 0 already there" in imported.stdout

    source, target = stored_rows(lite_stack, SOURCE), stored_rows(server_stack, TARGET)
    assert set(target) == set(source) and len(source) == 24
    for image_id, row in source.items():
        moved = target[image_id]
        assert {f: moved[f] for f in FIELDS if f not in ("label_score",)} == {
            f: row[f] for f in FIELDS if f not in ("label_score",)
        }
        assert moved["label_score"] == pytest.approx(row["label_score"], abs=1e-6)
        np.testing.assert_allclose(moved["vector"], row["vector"], atol=1e-6)

    # The server stack's web sees them: the collection list, the catalog, searches.
    client = Client(server_stack.base)
    listed = next(c for c in client.collections() if c["name"] == TARGET)
    assert (listed["count"], listed["model"]) == (24, source[next(iter(source))]["model"])
    some = sorted(source)[:3]
    for image_id in some:
        assert client.image(image_id, TARGET)["path"] == source[image_id]["path"]
        before, after = top10(lite_stack, SOURCE, image_id), top10(server_stack, TARGET, image_id)
        assert [i for i, _ in after] == [i for i, _ in before]
        np.testing.assert_allclose([s for _, s in after], [s for _, s in before], atol=1e-4)

    # Again: the same rows, nothing new.
    again = import_file(server_stack, exported, TARGET)
    assert again.returncode == 0, again.stderr
    assert "0 new, 24 already there" in again.stdout
    assert stored_rows(server_stack, TARGET).keys() == target.keys()
    assert next(c for c in client.collections() if c["name"] == TARGET)["count"] == 24


def test_a_file_of_another_model_or_dimension_is_refused(
    server_stack: Stack, exported: Path, imported: Any, tmp_path: Path
) -> None:
    table = pq.read_table(exported)
    dim = table.schema.field("vector").type.list_size
    other_model = table.replace_schema_metadata({**table.schema.metadata, b"model": b"other"})
    flat = pa.array(np.asarray(table.column("vector").to_pylist(), np.float32)[:, 1:].ravel())
    shorter = table.set_column(
        table.schema.get_field_index("vector"),
        pa.field("vector", pa.list_(pa.float32(), dim - 1), nullable=False),
        pa.FixedSizeListArray.from_arrays(flat, dim - 1),
    )
    assert imported.returncode == 0, imported.stderr
    before = stored_rows(server_stack, TARGET)
    for name, wrong in (("model.parquet", other_model), ("dim.parquet", shorter)):
        pq.write_table(wrong, tmp_path / name)
        refused = import_file(server_stack, tmp_path / name, TARGET)
        assert refused.returncode == 1, refused.stdout
        assert "holds" in refused.stderr and "Index into another collection" in refused.stderr
    after = stored_rows(server_stack, TARGET)
    assert after.keys() == before.keys()
    assert all(after[i]["model"] == before[i]["model"] for i in after)


def test_milvus_lite_is_not_written_beside_its_store_worker(
    lite_stack: Stack, exported: Path
) -> None:
    refused = import_file(lite_stack, exported, "import_lite")
    assert refused.returncode == 1
    assert "exactly one writer" in refused.stderr and "stop store" in refused.stderr
    assert not with_milvus(lite_stack.milvus_uri, lambda c: c.has_collection("import_lite"))
