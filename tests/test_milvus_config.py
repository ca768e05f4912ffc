"""The real Milvus server's configuration: written from the wheel's template, our keys over it."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Stack
from tests.helpers import free_port
from visionnet.milvus_server import (
    OVERRIDES,
    PORT_OFFSETS,
    PortTakenError,
    bind_exposed,
    ports,
    write_config,
)


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_overrides_replace_nested_keys_and_leave_the_rest(tmp_path: Path) -> None:
    plain = flat(yaml.safe_load((write_config(tmp_path, 41000) / "milvus.yaml").read_text()))
    configs = write_config(tmp_path, 41000, {"dataCoord.segment.maxSize": "2048"})
    tuned = flat(yaml.safe_load((configs / "milvus.yaml").read_text()))
    assert tuned["dataCoord.segment.maxSize"] == 2048
    assert plain["dataCoord.segment.maxSize"] == 512  # the template's own
    # The key is set where it is, not added beside it under a dotted name.
    assert not [k for k in tuned if "segment.maxSize" in k and k != "dataCoord.segment.maxSize"]
    changed = {k for k in tuned.keys() | plain.keys() if tuned.get(k) != plain.get(k)}
    assert changed == {"dataCoord.segment.maxSize"}, changed
    for key, value in OVERRIDES.items():
        assert str(tuned[key]) == value
    assert tuned["proxy.port"] == ports(41000)["proxy_port"]
    assert tuned["etcd.endpoints"] == f"127.0.0.1:{ports(41000)['etcd_port']}"


def test_the_segment_size_setting_reaches_the_running_server(server_stack: Stack) -> None:
    conf = server_stack.data / "milvus-server" / "configs" / "milvus.yaml"
    assert flat(yaml.safe_load(conf.read_text()))["dataCoord.segment.maxSize"] == 1024


def test_a_taken_host_port_is_named_with_its_role(tmp_path: Path) -> None:
    """The server's relay binds its client and metrics ports on 127.0.0.1 first;
    one held by another process fails with the port, its role and the setting,
    and the ports bound before it are let go."""
    base = free_port(len(PORT_OFFSETS))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + PORT_OFFSETS["metrics_port"]))
        holder.listen()
        with pytest.raises(PortTakenError) as caught:
            bind_exposed(base, ["proxy_port", "metrics_port"])
    message = str(caught.value)
    assert f"127.0.0.1:{base + 1}" in message
    assert "metrics_port" in message and f"milvus.embedded_port {base} + 1" in message
    with socket.socket() as again:  # the client port was released on the way out
        again.bind(("127.0.0.1", base))
    listeners = bind_exposed(base, ["proxy_port", "metrics_port"])
    assert [port for _, port in listeners] == [base, base + 1]
    for sock, _ in listeners:
        sock.close()
