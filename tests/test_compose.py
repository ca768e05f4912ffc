"""docker-compose.yml and the Dockerfile against the code they run.

No Docker engine runs here, so the file is checked as data: each container's
command goes through the real CLI parser, its environment through the real
settings, Redis's command line against the one the embedded stack starts, and,
when Debian's docker-compose is installed (scripts/setup.sh), the file through
its schema (`config` needs no engine).
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from visionnet.cli import main as cli_main
from visionnet.config.settings import Settings
from visionnet.config.unknown_keys import check_environ
from visionnet.core.liveness import WorkerRecord, WorkerRegistry
from visionnet.core.redis_conn import connect
from visionnet.probe import http_answers, parser, worker_alive
from visionnet.stack import REDIS_PERSISTENCE, redis_server_argv

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PUBLISHED = {"web", "flower"}
# Options of the embedded redis-server that belong to where it runs (a unix socket
# in the data folder, no TCP) rather than to what it keeps.
REDIS_PLACE = {"port", "bind", "unixsocket", "unixsocketperm", "dir", "loglevel", "maxmemory"}
# A pinned third-party tag: a full version or a MinIO release stamp, or a digest.
PINNED = re.compile(r"^(v?\d+\.\d+\.\d+[\w.-]*|RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z)$")
# ${NAME:?message}: compose refuses to start while NAME is unset or empty.
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, rest) of each Dockerfile line, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def is_visionnet(service: dict[str, Any]) -> bool:
    return "build" in service


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} as its default, ${VAR:?msg} as a value the user gave."""

    def one(m: re.Match[str]) -> str:
        name, kind, word = m.groups()
        return word if kind == "-" else f"given-{name.lower()}"

    return INTERPOLATION.sub(one, value)


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """What a VisionNet container's process sees: the image's ENV, then the service's."""
    env = {}
    for word, rest in dockerfile():
        if word == "ENV":
            name, _, value = rest.partition("=")
            env[name] = value
    env.update({k: interpolate(str(v)) for k, v in service.get("environment", {}).items()})
    return env


@pytest.fixture
def settings_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Settings as a container with this environment builds them (nothing of ours leaks in)."""

    def build(env: dict[str, str]) -> Settings:
        for name in [n for n in os.environ if n.upper().startswith("VISIONNET_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        check_environ(os.environ, Settings, "VISIONNET_", "__")  # also done by Settings()
        return Settings()  # type: ignore[call-arg]

    yield build


def cli_parse(args: list[str]) -> None:
    """Parse a container's command as ``visionnet ARGS`` would, running nothing."""
    parent = click.Context(cli_main, info_name="visionnet")
    name, command, rest = cli_main.resolve_command(parent, list(args))
    assert command is not None and name is not None
    command.make_context(name, rest, parent=parent)


def store_scaling_problems(compose: dict[str, Any], lite: dict[str, bool]) -> list[str]:
    """The rule: while Milvus Lite is in use, the store writer runs exactly once.

    Milvus Lite is in use where a service serves it (``milvus-lite`` in its command
    or entrypoint) or a VisionNet service's settings mean the embedded Lite
    (``lite``: service name -> ``Settings.milvus_is_lite``).
    """
    services = compose["services"]
    text = {n: " ".join(map(str, (s.get("entrypoint") or []) + (s.get("command") or [])))
            for n, s in services.items()}  # fmt: skip
    in_use = any("milvus-lite" in t for t in text.values()) or any(lite.values())
    stores = [n for n, s in services.items() if s.get("command") == ["worker", "store"]]
    problems = []
    for name in stores:
        replicas = services[name].get("deploy", {}).get("replicas", 1)
        if in_use and (replicas != 1 or len(stores) > 1):
            problems.append(f"{name}: {replicas} replicas of {len(stores)} store services")
    return problems


def test_commands_are_real_cli_commands() -> None:
    services = load()["services"]
    commands = {n: s["command"] for n, s in services.items() if is_visionnet(s)}
    assert set(commands) >= {"web", "flower", "store", "models-cpu", "models-gpu", "interactive"}
    for name, command in commands.items():
        assert isinstance(command, list), f"{name}: command as a list, not a shell string"
        cli_parse(command)
    # The parser refuses what a renamed subcommand or option would leave behind.
    with pytest.raises(click.UsageError):
        cli_parse(["worker", "modles"])
    with pytest.raises(click.NoSuchOption):
        cli_parse(["worker", "models", "--queue", "bulk"])


def test_every_visionnet_setting_is_known_and_valid(settings_of: Any) -> None:
    services = load()["services"]
    lite = {}
    for name, service in services.items():
        if is_visionnet(service):
            settings = settings_of(service_env(service))  # unknown names raise SettingsError
            lite[name] = settings.milvus_is_lite
            assert settings.data_path == Path("/var/lib/visionnet")
            assert "visionnet-data:/var/lib/visionnet" in service["volumes"]
    # The trio's Milvus serves every VisionNet service; no one runs Milvus Lite.
    assert lite and not any(lite.values())
    assert store_scaling_problems(load(), lite) == []


def test_store_rule_catches_a_scaled_writer_on_milvus_lite() -> None:
    compose = load()
    services = compose["services"]
    services["store"]["deploy"] = {"replicas": 2}
    assert store_scaling_problems(compose, {"store": False}) == []  # a real Milvus: allowed
    assert store_scaling_problems(compose, {"store": True}) != []  # URI empty: Lite
    services["milvus"]["command"] = ["milvus-lite", "server", "--data-dir", "/d"]
    assert store_scaling_problems(compose, {"store": False}) != []
    services["store"]["deploy"] = {"replicas": 1}
    assert store_scaling_problems(compose, {"store": False}) == []


def test_only_web_and_flower_are_published_on_loopback_with_auth(settings_of: Any) -> None:
    services = load()["services"]
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == PUBLISHED
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
    for name in PUBLISHED:
        service = services[name]
        settings = settings_of(service_env(service))
        port = settings.web.port if name == "web" else settings.flower.port
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    token = services["web"]["environment"]["VISIONNET_WEB__API_TOKEN"]
    auth = services["flower"]["environment"]["VISIONNET_FLOWER__BASIC_AUTH"]
    assert REQUIRED.match(token) and REQUIRED.match(token)[1] == "VISIONNET_API_TOKEN"
    assert REQUIRED.match(auth)


def redis_options(argv: list[str]) -> dict[str, str]:
    """``--name v1 v2`` as {name: "v1 v2"} (CONFIG GET's form); what precedes is dropped."""
    out: dict[str, list[str]] = {}
    current = None
    for arg in argv:
        if arg.startswith("--"):
            current = arg[2:]
            out[current] = []
        elif current is not None:
            out[current].append(arg)
    return {k: " ".join(v) for k, v in out.items()}


def test_redis_keeps_what_the_embedded_stack_keeps(settings_of: Any, tmp_path: Path) -> None:
    settings = settings_of({"VISIONNET_DATA_DIR": str(tmp_path)})
    embedded = redis_options(redis_server_argv(settings))
    command = load()["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    compose = redis_options(command)
    assert compose == {k: v for k, v in embedded.items() if k not in REDIS_PLACE}
    assert REDIS_PERSISTENCE.items() <= compose.items()
    assert compose["appendfsync"] == "always" and compose["maxmemory-policy"] == "noeviction"


def test_every_service_has_a_healthcheck(settings_of: Any) -> None:
    probes = parser()
    for name, service in load()["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name}: no healthcheck"
        if is_visionnet(service):
            assert test[1:4] == ["python", "-m", "visionnet.probe"], name
            args = probes.parse_args(test[4:])
            want = {"web": "web", "flower": "flower"}.get(name, "worker")
            assert args.what == want, name
            if want != "worker":
                settings = settings_of(service_env(service))
                assert args.port == getattr(settings, want).port


def test_images_are_pinned_and_built_by_the_dockerfile() -> None:
    steps = dockerfile()
    args = {rest.split("=")[0] for word, rest in steps if word == "ARG"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert ("ENTRYPOINT", '["visionnet"]') in steps  # commands are `visionnet` arguments
    for word, rest in steps:
        if word == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies a missing {source}"
    # Every role folder the package links to is in the image.
    copied = {rest.split()[0] for word, rest in steps if word == "COPY"}
    linked = {os.readlink(p).removeprefix("../") for p in (ROOT / "visionnet").iterdir()
              if p.is_symlink()}  # fmt: skip
    assert linked and linked <= copied
    builds: dict[str, str] = {}
    for name, service in load()["services"].items():
        image = service["image"]
        if not is_visionnet(service):
            repo, _, tag = image.rpartition(":")
            assert repo and PINNED.match(tag), f"{name}: {image} is not pinned"
            continue
        build = service["build"]
        assert build["context"] == "." and "dockerfile" not in build, name
        assert set(build["args"]) <= args, name
        assert build["args"]["TORCH"] in extras, name
        # One tag per build: two builds under one name overwrite each other's image.
        assert builds.setdefault(image, build["args"]["TORCH"]) == build["args"]["TORCH"], name
    assert builds == {"visionnet:cpu": "cpu", "visionnet:gpu": "gpu"}
    assert load()["services"]["models-gpu"]["profiles"] == ["gpu"]


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="no docker-compose (apt)")
def test_docker_compose_config_validates() -> None:
    base = {k: v for k, v in os.environ.items() if k not in {"VISIONNET_API_TOKEN", "FLOWER_AUTH"}}
    argv = ["docker-compose", "--profile", "gpu", "-f", str(COMPOSE), "config", "-q"]
    given = {**base, "VISIONNET_API_TOKEN": "t", "FLOWER_AUTH": "u:p"}
    done = subprocess.run(argv, env=given, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # Without the web's token compose refuses to start anything.
    refused = subprocess.run(
        argv, env={**base, "FLOWER_AUTH": "u:p"}, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0 and "VISIONNET_API_TOKEN" in refused.stderr


class _Status(http.server.BaseHTTPRequestHandler):
    status = 401

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_probe_http_answers() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert http_answers(port, "/")  # 401: auth on, serving
        _Status.status = 503
        assert not http_answers(port, "/")
    finally:
        _Status.status = 401
        server.shutdown()
        server.server_close()
    assert not http_answers(port, "/", timeout_s=2.0)  # nothing listens


def test_probe_worker_alive(private_redis: str, tmp_path: Path) -> None:
    registry = WorkerRegistry(connect(private_redis))
    record = WorkerRecord(
        name="models@box-a", host="box-a", pid=1, queues=["bulk"], time=0.0, ttl_s=30.0
    )
    registry.beat(record)
    try:
        assert worker_alive(private_redis, "box-a")
        assert not worker_alive(private_redis, "box-b")
    finally:
        registry.forget(record.name)
    assert not worker_alive(private_redis, "box-a")
    assert not worker_alive(f"redis+socket://{tmp_path}/none.sock", "box-a", timeout_s=1.0)
