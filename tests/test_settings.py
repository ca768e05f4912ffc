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


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("VISIONNET_MODELS__BATCHSIZE", "VISIONNET_MODELS__BATCH_SIZE"),
        ("VISIONNET_MODLES__BATCH_SIZE", "VISIONNET_MODELS__BATCH_SIZE"),
        ("VISIONNET_JOBS__CHUNKSIZE", "VISIONNET_JOBS__CHUNK_SIZE"),
        ("VISIONNET_RESULT_TTL", "VISIONNET_RESULT_TTL_S"),
    ],
)
def test_unknown_env_setting_stops_with_the_nearest_name(
    monkeypatch: pytest.MonkeyPatch, typo: str, meant: str
) -> None:
    from visionnet.config.settings import SettingsError, get_settings

    monkeypatch.setenv(typo, "64")
    expected = f"unknown setting {typo}; did you mean {meant}?"
    with pytest.raises(SettingsError) as raised:
        Settings()  # type: ignore[call-arg]
    assert str(raised.value) == expected
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match=expected):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_env_names_that_are_not_settings_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionnet.config.unknown_keys import NOT_SETTINGS

    for name in NOT_SETTINGS:
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("VISIONNET_CONFIG_FILE")  # it names a file that must exist
    monkeypatch.setenv("visionnet_models__batch_size", "16")  # names compare without case
    monkeypatch.setenv("VISIONNET_JOBS__RETENTION_S__SEARCH", "60")  # a section in a section
    monkeypatch.setenv("VISIONNET_FLOWER", '{"port": 5600}')  # a whole section as JSON
    s = Settings()  # type: ignore[call-arg]
    assert s.models.batch_size == 16 and s.flower.port == 5600


def test_every_visionnet_variable_the_project_uses_is_known() -> None:
    """A VISIONNET_ name in the code that is neither a setting nor allow-listed would stop
    every process that inherits it: a new one must go into NOT_SETTINGS."""
    import re

    from visionnet.config.settings import ENV_PREFIX
    from visionnet.config.unknown_keys import NOT_SETTINGS, setting_paths

    repo = Path(__file__).resolve().parent.parent
    known = {ENV_PREFIX + "__".join(p).upper() for p in setting_paths(Settings)}
    known |= set(NOT_SETTINGS)
    used: set[str] = set()
    for folder in ("visionnet", "web", "workers", "config", "training", "scripts", "bench"):
        for path in (repo / folder).rglob("*"):
            if path.name == "unknown_keys.py":  # its docstring shows typos
                continue
            if path.suffix in {".py", ".sh", ".toml"} and path.is_file():
                used |= set(re.findall(r"\bVISIONNET_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    for name in ("docker-compose.yml", "Dockerfile"):
        used |= set(re.findall(r"\bVISIONNET_[A-Z0-9_]*[A-Z0-9]", (repo / name).read_text()))
    assert used, "the scan found nothing"
    assert sorted(used - known) == []


def test_unknown_toml_key_stops_with_the_nearest_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from visionnet.config.settings import SettingsError, get_settings

    user = tmp_path / "visionnet.toml"
    user.write_text("[models]\nbatchsize = 64\n")
    monkeypatch.setenv("VISIONNET_CONFIG_FILE", str(user))
    with pytest.raises(ValidationError, match="batchsize"):
        Settings()  # type: ignore[call-arg]
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as raised:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert str(raised.value) == (
        "unknown setting models.batchsize (in a settings file); did you mean models.batch_size?"
    )
    user.write_text("[modles]\nbatch_size = 64\n")
    with pytest.raises(ValidationError, match="modles"):
        Settings()  # type: ignore[call-arg]


def test_cli_with_a_typo_exits_nonzero_with_the_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = str(Path(sys.executable).with_name("visionnet"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env["VISIONNET_DATA_DIR"] = str(tmp_path)
    env["VISIONNET_MODELS__BATCHSIZE"] = "64"
    # `worker store` reads the settings first, as `up`, `web` and every worker do.
    for argv in (["up"], ["worker", "store"]):
        out = subprocess.run(
            [cli, *argv], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        assert (
            "unknown setting VISIONNET_MODELS__BATCHSIZE; "
            "did you mean VISIONNET_MODELS__BATCH_SIZE?" in out.stderr
        )
        assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()  # `up` wrote no supervisor config
