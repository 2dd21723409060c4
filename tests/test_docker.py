"""docker/compose.yaml and the Dockerfiles, checked against the project they package.

Needs no database and no Docker engine: the files are parsed and compared with
evalsite/settings.py, pyproject.toml, requirements.lock and the source tree. Where a
Compose executable is installed (Debian's `docker-compose` package, or the `docker compose`
plugin), it validates the file too; where none is, that test is skipped and says why.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
SETTINGS_FILE = REPO / "evalsite" / "settings.py"
# Variables the compose file may set for programs other than evalsite's settings. Keep this
# short: everything else must be a name settings.py reads, so that a typo fails here.
READ_BY_OTHER_PROGRAMS = {"WEB_CONCURRENCY": "gunicorn (number of worker processes)"}


# --- reading the files -------------------------------------------------------------------

def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the x-* anchors and << merges


def services() -> dict[str, dict]:
    found = load_compose().get("services") or {}
    assert found, f"{COMPOSE_FILE}: no services"
    return found


def built_services() -> dict[str, dict]:
    """Services built from this repository's Dockerfiles (the evalsite containers)."""
    return {name: svc for name, svc in services().items() if "build" in svc}


def build_paths(service: dict) -> tuple[Path, Path]:
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def dockerfiles() -> dict[Path, Path]:
    """Each Dockerfile that compose builds -> its build context."""
    found = {}
    for svc in built_services().values():
        context, dockerfile = build_paths(svc)
        found[dockerfile] = context
    assert found, f"{COMPOSE_FILE}: no service has a build section"
    return found


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    arguments = arguments.strip()
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def image_command(dockerfile: Path) -> list[str]:
    cmds = [exec_form(args) for keyword, args in dockerfile_instructions(dockerfile) if keyword == "CMD"]
    assert cmds, f"{dockerfile}: no CMD"
    return cmds[-1]


def service_command(name: str, svc: dict) -> list[str]:
    command = svc.get("command")
    if command is None and "build" in svc:
        return image_command(build_paths(svc)[1])
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command or []]


def option(command: list[str], *names: str) -> str | None:
    for i, part in enumerate(command):
        for name in names:
            if part == name and i + 1 < len(command):
                return command[i + 1]
            if name.startswith("--") and part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def is_celery_worker(command: list[str]) -> bool:
    text = " ".join(command)
    return "celery" in text and " worker" in f" {text} "


def celery_workers() -> dict[str, list[str]]:
    workers = {name: service_command(name, svc) for name, svc in services().items()}
    return {name: cmd for name, cmd in workers.items() if is_celery_worker(cmd)}


def queues_of(command: list[str]) -> set[str]:
    value = option(command, "-Q", "--queues")
    assert value, f"{' '.join(command)}: names no queue (-Q); it would consume the default only by accident"
    return {q.strip() for q in value.split(",") if q.strip()}


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def gpu_devices(svc: dict) -> list[dict]:
    reservations = ((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    return reservations.get("devices") or []


def settings_env_names() -> set[str]:
    """The environment variables evalsite/settings.py reads: os.environ.get("X"),
    os.getenv("X"), os.environ["X"], and helpers in settings that pass their first
    parameter to one of those (_env_bool("X", ...))."""
    tree = ast.parse(SETTINGS_FILE.read_text())

    def is_os_environ(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ"
                and isinstance(node.value, ast.Name) and node.value.id == "os")

    def is_env_read(node) -> bool:
        if not isinstance(node, ast.Call) or not node.args:
            return False
        func = node.func
        return isinstance(func, ast.Attribute) and (
            (func.attr in {"get", "setdefault"} and is_os_environ(func.value))
            or (func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os")
        )

    helpers = set()
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.args.args:
            first = fn.args.args[0].arg
            if any(is_env_read(n) and isinstance(n.args[0], ast.Name) and n.args[0].id == first
                   for n in ast.walk(fn)):
                helpers.add(fn.name)

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            is_helper = isinstance(node.func, ast.Name) and node.func.id in helpers
            if is_env_read(node) or is_helper:
                names.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and is_os_environ(node.value) and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def routed_queues() -> set[str]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    from django.conf import settings

    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    assert isinstance(routes, dict), (
        f"CELERY_TASK_ROUTES is a {type(routes).__name__}; this test reads a dict of task name -> {{'queue': ...}}"
    )
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for task, route in routes.items():
        assert isinstance(route, dict) and route.get("queue"), f"CELERY_TASK_ROUTES[{task!r}] names no queue"
        queues.add(route["queue"])
    return queues


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return pins("\n".join(project["dependencies"]))


def lock_pins() -> dict[str, str]:
    return pins((REPO / "requirements.lock").read_text())


# --- the checks ---------------------------------------------------------------------------

def test_every_build_names_a_dockerfile_that_exists():
    for name, svc in built_services().items():
        context, dockerfile = build_paths(svc)
        assert context.is_dir(), f"service {name}: build context {context} does not exist"
        assert dockerfile.is_file(), f"service {name}: {dockerfile} does not exist"


def test_every_copied_file_exists_and_reaches_the_build():
    for dockerfile, context in dockerfiles().items():
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        ignore_lines = ignore.read_text().splitlines() if ignore.exists() else []
        allowlist = bool(ignore_lines) and "*" in [line.strip() for line in ignore_lines]
        copies = [args for keyword, args in dockerfile_instructions(dockerfile) if keyword in {"COPY", "ADD"}]
        assert copies, f"{dockerfile}: copies nothing from the repository"
        for args in copies:
            parts = [p for p in exec_form(args) if not p.startswith("--")]
            if any(p.startswith("--from") for p in exec_form(args)):
                continue  # from another stage or image, not the build context
            for source in parts[:-1]:
                matches = list(context.glob(source))
                assert matches, f"{dockerfile.name}: COPY {source}: no such file in {context}"
                if allowlist:
                    # `*` then `!path` lines: a COPY source the ignore file does not let
                    # through would fail the build.
                    top = Path(source).parts[0]
                    assert f"!{top}" in [line.strip() for line in ignore_lines], (
                        f"{ignore.name} excludes everything but does not let {top} through for COPY {source}"
                    )


def dockerfile_arg_defaults(dockerfile: Path) -> dict[str, str | None]:
    defaults = {}
    for keyword, rest in dockerfile_instructions(dockerfile):
        if keyword == "ARG":
            key, sep, value = rest.partition("=")
            defaults[key.strip()] = value.strip().strip('"') if sep else None
    return defaults


def test_build_args_are_declared_with_the_same_defaults():
    for name, svc in built_services().items():
        args = svc["build"].get("args") or {} if isinstance(svc["build"], dict) else {}
        if isinstance(args, list):
            args = dict(item.split("=", 1) for item in args)
        declared = dockerfile_arg_defaults(build_paths(svc)[1])
        for arg, value in args.items():
            assert arg in declared, f"service {name}: build arg {arg} is not an ARG of {build_paths(svc)[1].name}"
            default = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
            if default:
                assert default.group(2) == declared[arg], (
                    f"service {name}: {arg} defaults to {default.group(2)!r} in compose.yaml "
                    f"but to {declared[arg]!r} in {build_paths(svc)[1].name}"
                )


def test_torch_pins_agree_with_pyproject():
    project, lock = pyproject_pins(), lock_pins()
    for package in ("torch", "torchvision"):
        assert package in project, f"pyproject.toml does not pin {package}"
        # The Dockerfiles install torch at the lock's versions.
        assert lock.get(package) == project[package], (
            f"requirements.lock pins {package}=={lock.get(package)}, pyproject.toml {package}=={project[package]}"
        )
    for dockerfile in dockerfiles():
        for package, version in re.findall(r"\b(torch|torchvision)==([0-9][^\s\"')]*)", dockerfile.read_text()):
            assert version.split("+")[0] == project[package], (
                f"{dockerfile.name} mentions {package}=={version}; pyproject.toml pins {project[package]}"
            )


def test_gpu_image_cuda_matches_the_locked_torch_build():
    runtime = lock_pins().get("nvidia-cuda-runtime")
    assert runtime, "requirements.lock pins no nvidia-cuda-runtime; which CUDA does torch use?"
    locked_cuda = ".".join(runtime.split(".")[:2])
    gpu_dockerfiles = {
        build_paths(svc)[1] for svc in built_services().values() if gpu_devices(svc)
    }
    assert gpu_dockerfiles, "no GPU worker is built from a Dockerfile"
    for dockerfile in gpu_dockerfiles:
        args = dockerfile_arg_defaults(dockerfile)  # ARGs before FROM are what FROM may use
        from_line = next(rest for keyword, rest in dockerfile_instructions(dockerfile) if keyword == "FROM")
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1)) or m.group(0), from_line.split()[0])
        match = re.match(r"(?:[\w.\-/]+/)?nvidia/cuda:(\d+\.\d+)", base)
        assert match, f"{dockerfile.name}: base image {base} is not an nvidia/cuda image"
        assert match.group(1) == locked_cuda, (
            f"{dockerfile.name}: base {base} is CUDA {match.group(1)}, the locked torch uses CUDA {locked_cuda} "
            f"(nvidia-cuda-runtime=={runtime})"
        )


def test_worker_queues_are_the_routed_ones():
    routed = routed_queues()
    workers = celery_workers()
    assert workers, f"{COMPOSE_FILE}: no Celery worker"
    consumed = set()
    for name, command in workers.items():
        assert option(command, "-A", "--app") == "evalsite", f"service {name}: not the evalsite app: {command}"
        queues = queues_of(command)
        assert queues <= routed, f"service {name} consumes {sorted(queues - routed)}, which no task is routed to ({sorted(routed)})"
        consumed |= queues
    assert routed <= consumed, f"queues {sorted(routed - consumed)} get tasks but no worker in {COMPOSE_FILE.name}"
    names = [option(command, "-n", "--hostname") for command in workers.values()]
    assert all(names) and len(set(names)) == len(names), f"worker names (-n) must be set and distinct: {names}"
    # The GPU image's own command is a generation worker too.
    for dockerfile in {build_paths(s)[1] for s in built_services().values() if gpu_devices(s)}:
        command = image_command(dockerfile)
        assert is_celery_worker(command) and queues_of(command) == {"gpu"}, f"{dockerfile.name}: CMD {command}"
        assert option(command, "--pool", "-P") == "solo", f"{dockerfile.name}: CMD without --pool solo"


def test_each_gpu_worker_has_one_gpu_of_its_own_and_one_process():
    gpu_services = {name: svc for name, svc in services().items() if gpu_devices(svc)}
    assert gpu_services, f"{COMPOSE_FILE}: no service reserves a GPU"
    seen = {}
    for name, svc in gpu_services.items():
        devices = gpu_devices(svc)
        assert len(devices) == 1, f"service {name}: {len(devices)} device reservations, expected one"
        device = devices[0]
        assert device.get("driver") == "nvidia" and "gpu" in (device.get("capabilities") or []), f"service {name}: {device}"
        assert "count" not in device, f"service {name}: reserve by device_ids, not count ({device})"
        ids = [str(i) for i in device.get("device_ids") or []]
        assert len(ids) == 1, f"service {name}: device_ids {ids}: one worker process per GPU"
        assert ids[0] not in seen, f"services {seen.get(ids[0])} and {name} both reserve GPU {ids[0]}"
        seen[ids[0]] = name
        command = service_command(name, svc)
        assert is_celery_worker(command), f"service {name} reserves a GPU but runs {command}"
        assert option(command, "--pool", "-P") == "solo", f"service {name}: a GPU worker needs --pool solo"
        assert option(command, "--concurrency", "-c") == "1", f"service {name}: a GPU worker needs --concurrency 1"
        # The container sees only its own GPU, as device 0.
        device_setting = environment(svc).get("EVALSITE_DEVICE", "")
        assert device_setting in {"cuda", "cuda:0"}, f"service {name}: EVALSITE_DEVICE={device_setting!r}, expected cuda"
    for name, command in celery_workers().items():
        if "gpu" in queues_of(command):
            assert name in gpu_services, f"service {name} consumes the gpu queue without reserving a GPU"


def test_compose_environment_names_only_settings_that_exist():
    known = settings_env_names()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY"} <= known, f"settings.py read as {sorted(known)}"
    anchor = load_compose().get("x-evalsite-env")
    assert anchor, f"{COMPOSE_FILE}: no x-evalsite-env"
    checked = {"x-evalsite-env": environment({"environment": anchor})}
    checked.update({name: environment(svc) for name, svc in built_services().items()})
    for where, env in checked.items():
        unknown = sorted(set(env) - known - set(READ_BY_OTHER_PROGRAMS))
        assert not unknown, f"{where}: {unknown} are not read by evalsite/settings.py (typo?); it reads {sorted(known)}"
    for name, svc in built_services().items():
        env = environment(svc)
        assert env.get("DATABASE_URL", "").startswith("postgresql://"), f"service {name}: DATABASE_URL"
        assert env.get("CELERY_BROKER_URL", "").startswith("redis://"), f"service {name}: CELERY_BROKER_URL"
        assert env.get("DJANGO_DEBUG") == "0", f"service {name}: DJANGO_DEBUG must be 0 in production"


def test_services_start_after_the_migration():
    all_services = services()
    migrations = [name for name, svc in all_services.items() if "migrate" in service_command(name, svc)]
    assert len(migrations) == 1, f"expected one migrate service, found {migrations}"
    migrate = migrations[0]
    for name, svc in built_services().items():
        if name == migrate:
            continue
        condition = ((svc.get("depends_on") or {}).get(migrate) or {}).get("condition")
        assert condition == "service_completed_successfully", f"service {name} does not wait for {migrate}"
    for name in ("postgres", "redis"):
        assert "healthcheck" in all_services[name], f"service {name}: no healthcheck"


def test_wsgi_module_and_celery_app_exist():
    wsgi = next(part for part in image_command(REPO / "docker" / "Dockerfile.web") if ":" in part)
    module, _, attribute = wsgi.partition(":")
    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, f"Dockerfile.web serves {wsgi}, but {module} is not importable"
    assigned = {
        target.id
        for node in ast.walk(ast.parse(Path(spec.origin).read_text()))
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in assigned, f"{spec.origin} defines no {attribute}"

    from celery import Celery
    from celery.app.utils import find_app  # what `celery -A NAME` uses

    apps = {option(command, "-A", "--app") for command in celery_workers().values()}
    for name in apps:
        assert isinstance(find_app(name), Celery), f"celery -A {name}: not a Celery app"


def _compose_commands():
    commands = []
    # Debian's docker-compose: CI installs it (.ci/run), so the test requires it there.
    commands.append(pytest.param(["docker-compose"], id="docker-compose"))
    plugin = shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True
    ).returncode == 0
    if plugin:
        commands.append(pytest.param(["docker", "compose"], id="docker-compose-v2"))
    else:
        commands.append(pytest.param(None, id="docker-compose-v2", marks=pytest.mark.skip(
            reason="the Docker Compose v2 plugin (`docker compose`) is not installed")))
    return commands


@pytest.mark.parametrize("compose", _compose_commands())
def test_compose_validates(compose):
    if compose == ["docker-compose"]:
        from tests.conftest import require_tool

        require_tool("docker-compose", "Debian's docker-compose (apt-get install -y docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k != "DJANGO_SECRET_KEY"}
    run = [*compose, "-f", str(COMPOSE_FILE), "config", "-q"]

    ok = subprocess.run(run, env={**env, "DJANGO_SECRET_KEY": "test-only"}, cwd=REPO,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, f"{' '.join(run)} failed:\n{ok.stdout}{ok.stderr}"

    # No secret key, no stack: the ${DJANGO_SECRET_KEY:?...} guard refuses.
    refused = subprocess.run(run, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0, f"{' '.join(run)} accepted the file without DJANGO_SECRET_KEY"
    assert "set DJANGO_SECRET_KEY" in refused.stdout + refused.stderr
