"""Settings: TOML defaults, a user file over them, the environment over both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from visionnet.config.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("VISIONNET_"):
            monkeypatch.delenv(key)


def test_defaults_come_from_toml() -> None:
    s = Settings()  # type: ignore[call-arg]
    assert s.profile == "demo"
    assert s.web.host == "127.0.0.1" and s.web.port == 8000
    assert s.flower.host == "127.0.0.1"
    assert s.models.classifier == "google/vit-base-patch16-224"
    assert ".jpg" in s.jobs.extensions
    assert s.allowed_roots == []


def test_env_overrides_nested_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VISIONNET_WEB__PORT", "9123")
    monkeypatch.setenv("VISIONNET_MODELS__EMBEDDER", "/models/clip")
    monkeypatch.setenv("VISIONNET_ALLOWED_ROOTS", f'["{tmp_path}"]')
    s = Settings()  # type: ignore[call-arg]
    assert s.web.port == 9123
    assert s.web.host == "127.0.0.1"  # the rest of the section stays
    assert s.models.embedder == "/models/clip"
    assert s.resolved_roots == [tmp_path.resolve()]


def test_user_file_between_defaults_and_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = tmp_path / "visionnet.toml"
    user.write_text('profile = "default"\n[jobs]\nchunk_size = 64\n[web]\nport = 7000\n')
    monkeypatch.setenv("VISIONNET_CONFIG_FILE", str(user))
    monkeypatch.setenv("VISIONNET_WEB__PORT", "7001")
    s = Settings()  # type: ignore[call-arg]
    assert s.profile == "default"
    assert s.jobs.chunk_size == 64
    assert s.jobs.default_top_k == 5  # untouched keys keep their defaults
    assert s.web.port == 7001


def test_invalid_values_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONNET_JOBS__CHUNK_SIZE", "0")
    with pytest.raises(ValidationError):
        Settings()  # type: ignore[call-arg]


@pytest.mark.parametrize("section", ["WEB", "FLOWER"])
def test_public_listener_needs_credentials(monkeypatch: pytest.MonkeyPatch, section: str) -> None:
    monkeypatch.setenv(f"VISIONNET_{section}__HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match="not loopback"):
        Settings()  # type: ignore[call-arg]
    monkeypatch.setenv("VISIONNET_WEB__API_TOKEN", "s3cret")
    monkeypatch.setenv("VISIONNET_FLOWER__BASIC_AUTH", "admin:pw")
    assert Settings().web.api_token == "s3cret"  # type: ignore[call-arg]


def test_children_of_the_stack_see_the_embedded_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The store writer flushes Milvus Lite only when it knows the store is the
    embedded one: the environment the stack gives its children must say so."""
    from visionnet.stack import child_env

    monkeypatch.setenv("VISIONNET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VISIONNET_MILVUS__EMBEDDED_PORT", "19999")
    parent = Settings()  # type: ignore[call-arg]
    env = child_env(parent)
    for name in [k for k in os.environ if k.startswith("VISIONNET_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("VISIONNET_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # children may start elsewhere
    child = Settings()  # type: ignore[call-arg]
    assert child.milvus_is_lite
    assert child.effective_milvus_uri == parent.effective_milvus_uri == "http://127.0.0.1:19999"
    assert child.data_path == parent.data_path


@pytest.mark.parametrize("nice", [0, 7])
def test_store_nice_runs_only_the_store_path_under_nice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nice: int
) -> None:
    import configparser

    from visionnet.stack import supervisor_config

    monkeypatch.setenv("VISIONNET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VISIONNET_STACK__STORE_NICE", str(nice))
    conf = configparser.RawConfigParser()
    conf.read_string(supervisor_config(Settings()))  # type: ignore[call-arg]
    niced = {
        section.split(":", 1)[1]
        for section in conf.sections()
        if section.startswith("program:") and " -n " in conf[section]["command"]
    }
    assert niced == ({"milvus", "store"} if nice else set())
    if nice:
        assert conf["program:store"]["command"].split()[1:3] == ["-n", str(nice)]
