"""The shape of the house: one installed top-level package, and imports that run one way.

Rooms: ``visionnet.core`` (shared contracts) and ``visionnet.config`` know no
role; ``web``, the model worker and the store writer know the core but not each
other; training is an offline tool over the model library; the CLI
(``visionnet.cli``, ``visionnet.stack``) is the one place that may import every side.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE_FOLDERS = ("config", "web", "workers", "training")

CORE = ("visionnet.core", "visionnet.config")
# Longest matching prefix wins: what a module under it may import from visionnet.
ALLOWED: dict[str, tuple[str, ...]] = {
    "visionnet": (),
    "visionnet.cli": ("visionnet",),
    "visionnet.stack": ("visionnet",),
    # The run command's hand-back of a killed stack's messages: part of the stack.
    "visionnet.unacked": ("visionnet",),
    # Container healthchecks: liveness records and settings, nothing of a role.
    "visionnet.probe": CORE,
    # The API client knows the API only; its CLI commands add the local settings.
    "visionnet.client": (),
    "visionnet.cli_client": ("visionnet.client", "visionnet.config"),
    "visionnet.config": ("visionnet.config",),
    "visionnet.core": CORE,
    "visionnet.web": ("visionnet.web", *CORE),
    "visionnet.workers": ("visionnet.workers", *CORE),
    "visionnet.workers.models": ("visionnet.workers.models",),
    "visionnet.workers.vectorstore": ("visionnet.workers.vectorstore",),
    # URL downloads behind the SSRF guard: a library for whichever worker downloads.
    "visionnet.workers.fetch": ("visionnet.workers.fetch", *CORE),
    "visionnet.workers.model_worker": (
        "visionnet.workers.model_worker",
        "visionnet.workers.base",
        "visionnet.workers.commit",  # direct writes to a real Milvus server
        "visionnet.workers.chunk_errors",  # a chunk's files failed, the job goes on
        "visionnet.workers.moves",  # moved files, found here and applied by the writer
        "visionnet.workers.models",
        "visionnet.workers.vectorstore",
        "visionnet.workers.fetch",  # URL-list sources
        *CORE,
    ),
    "visionnet.workers.store_writer": (
        "visionnet.workers.store_writer",
        "visionnet.workers.base",
        "visionnet.workers.commit",
        "visionnet.workers.chunk_errors",
        "visionnet.workers.vectorstore",
        *CORE,
    ),
    "visionnet.training": ("visionnet.training", "visionnet.workers.models"),
}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def package_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, through the linked role folders."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(ROOT / "visionnet", followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = Path(dirpath).relative_to(ROOT)
        for name in filenames:
            if name.endswith(".py"):
                parts = [*rel.parts, name.removesuffix(".py")]
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = Path(dirpath) / name
    return found


def imports_of(path: Path) -> set[str]:
    """Absolute imports anywhere in the file, function-level ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_import_directions() -> None:
    modules = package_modules()
    assert {"visionnet.web", "visionnet.workers.store_writer.write_chunk"} <= set(modules)
    assert {"visionnet.core.jobtypes", "visionnet.training.trainer"} <= set(modules)
    wrong: list[str] = []
    for module, path in sorted(modules.items()):
        rule = max((p for p in ALLOWED if _under(module, p)), key=len)
        for target in sorted(imports_of(path)):
            if not _under(target, "visionnet") or target not in modules:
                continue  # third-party, or a name imported from a module
            if not any(_under(target, allowed) for allowed in ALLOWED[rule]):
                wrong.append(f"{module} imports {target} (rule {rule})")
    assert wrong == []


def test_nothing_imports_the_role_folders_by_their_folder_names() -> None:
    sources = [p for d in ("visionnet", "tests", "bench") for p in (ROOT / d).rglob("*.py")]
    sources += [p for d in ROLE_FOLDERS for p in (ROOT / d).rglob("*.py")]
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        for name in imports_of(path)
        if name.split(".")[0] in ROLE_FOLDERS
    ]
    assert bad == []


def test_role_folders_are_the_package_subpackages() -> None:
    for folder in ROLE_FOLDERS:
        link = ROOT / "visionnet" / folder
        assert link.is_symlink() and link.resolve() == ROOT / folder


@pytest.mark.timeout(600)
def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(
        ".*", "var", "build", "dist", "*.egg-info", "__pycache__", "bench", "tests"
    )
    shutil.copytree(ROOT, src, symlinks=True, ignore=skip)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("visionnet-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    where = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    site = Path(where.stdout.strip())
    before = set(os.listdir(site))
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    added = set(os.listdir(site)) - before - {"__pycache__"}
    assert {n for n in added if not n.endswith(".dist-info")} == {"visionnet"}
    pkg = site / "visionnet"
    for folder in ROLE_FOLDERS:
        assert (pkg / folder / "__init__.py").is_file()
        assert not (pkg / folder).is_symlink()
    assert (pkg / "config" / "defaults.toml").is_file()
    assert (pkg / "web" / "templates" / "index.html").is_file()
    assert (pkg / "workers" / "models" / "weights" / "demo-cifar10" / "model.safetensors").is_file()
    assert (pkg / "core" / "jobtypes.py").is_file()


def test_the_job_type_table_drives_routes_tasks_and_endpoints() -> None:
    from visionnet.config.settings import Settings
    from visionnet.core.jobtypes import JOB_TYPES
    from visionnet.core.queues import celery_config
    from visionnet.web import create_app
    from visionnet.workers.celery_app import app as celery

    settings = Settings()  # type: ignore[call-arg]
    routes = celery_config(settings)["task_routes"]
    celery.loader.import_default_modules()
    spec_doc = create_app({"SETTINGS": settings}).api_doc
    assert set(JOB_TYPES) == {
        "classify",
        "delete",
        "duplicates",
        "embed",
        "export",
        "index",
        "search",
    }
    for spec in JOB_TYPES.values():
        assert routes[spec.task] == {"queue": spec.queue}
        assert spec.task in celery.tasks, spec.task
        post = spec_doc["paths"][f"/api/v1/{spec.name}"]["post"]
        assert "application/json" in post["requestBody"]["content"]
    job_view = spec_doc["components"]["schemas"]["JobView"]["properties"]
    assert job_view["type"]["enum"] == list(JOB_TYPES)
