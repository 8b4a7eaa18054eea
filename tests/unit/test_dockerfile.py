"""The image runs the fast path: the wheel its Dockerfile builds holds the compiled walk and files check.

No Docker daemon is needed: the test reads the Dockerfile's COPY lines (and .dockerignore) to make a
build context holding exactly what the build stage gets, then runs the Dockerfile's own `pip wheel`
command in it. A COPY line that forgets setup.py, or a .dockerignore that lets a locally built `.so`
slip in instead of being compiled, fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
EXTENSIONS = {
    "statpage": re.compile(r"guard/backup/walk/_statpage\.[^/]*\.so"),
    "pathsets": re.compile(r"guard/fs/_pathsets\.[^/]*\.so"),
    "chunker": re.compile(r"guard/backup/repo/_chunker\.[^/]*\.so"),
}


def instructions() -> list[tuple[str, str]]:
    """Return the Dockerfile's (INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def build_stage() -> list[tuple[str, str]]:
    """The instructions of the stage that builds the wheel (the one whose RUN has `pip wheel`)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return next(s for s in stages if any(i == "RUN" and "pip wheel" in a for i, a in s))


def ignored(relative: str, patterns: list[str]) -> bool:
    """Tell whether .dockerignore keeps a path out of the build context (it or a parent matches)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(_regex(p).fullmatch(prefix) for p in patterns for prefix in prefixes)


def _regex(pattern: str) -> re.Pattern[str]:
    text = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
    return re.compile(text.replace(r"\?", "[^/]"))


def dockerignore() -> list[str]:
    path = ROOT / ".dockerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def make_context(target: Path) -> Path:
    """Copy what the build stage's COPY lines copy into target as its WORKDIR; return that folder."""
    stage = build_stage()
    workdir = target / next(a for i, a in stage if i == "WORKDIR").lstrip("/")
    workdir.mkdir(parents=True)
    patterns = dockerignore()

    def skip(folder: str, names: list[str]) -> set[str]:
        base = Path(folder).relative_to(ROOT).as_posix()
        return {n for n in names if ignored(n if base == "." else f"{base}/{n}", patterns)}

    for instruction, arguments in stage:
        if instruction != "COPY":
            continue
        *sources, destination = shlex.split(arguments)
        assert not any(s.startswith("--") for s in sources), arguments  # no --from in the build stage
        for source in sources:
            path = ROOT / source
            into = workdir / destination / path.name if destination.endswith("/") else workdir / destination
            if path.is_dir():
                shutil.copytree(path, into, symlinks=True, ignore=skip, dirs_exist_ok=True)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)
    return workdir


def pip_wheel_arguments(out: Path) -> list[str]:
    """The Dockerfile's `pip wheel ...` arguments, with its wheel folder replaced by out."""
    run = next(a for i, a in build_stage() if i == "RUN" and "pip wheel" in a)
    command = shlex.split(run.split("pip wheel", 1)[1].split("&&", 1)[0])
    folder = command[command.index("--wheel-dir") + 1]
    return [str(out) if word == folder else word for word in command]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("image")
    context = make_context(base / "context")
    assert not [p for p in context.rglob("*.so")], "a prebuilt extension reached the build context"
    out = base / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", *pip_wheel_arguments(out)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = out.glob("incident_guard-*.whl")
    return found


def test_the_build_stage_copies_setup_py_and_the_c_source() -> None:
    copied = [shlex.split(a)[:-1] for i, a in build_stage() if i == "COPY"]
    sources = {s for group in copied for s in group}
    assert {"setup.py", "pyproject.toml", "guard"} <= sources


def test_the_context_rules_keep_local_builds_out() -> None:
    patterns = dockerignore()
    assert ignored("guard/backup/walk/_statpage.cpython-311-x86_64-linux-gnu.so", patterns)
    assert ignored("guard/fs/_pathsets.cpython-311-x86_64-linux-gnu.so", patterns)
    assert ignored("guard/backup/repo/_chunker.cpython-311-x86_64-linux-gnu.so", patterns)
    assert ignored("guard/cli/__pycache__/main.cpython-311.pyc", patterns)
    assert not ignored("guard/backup/walk/_statpage.c", patterns)
    assert not ignored("guard/fs/_pathsets.c", patterns)
    assert not ignored("setup.py", patterns)


def test_the_wheel_the_dockerfile_builds_holds_the_compiled_walk(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for extension in EXTENSIONS.values():
        assert [n for n in names if extension.fullmatch(n)], sorted(n for n in names if n.endswith(".so"))
    assert any(n.startswith("guard/demo/prisma/migrations/") for n in names)  # the link resolved


def test_the_dockerfiles_own_check_passes_this_wheel_and_refuses_one_without_it(
    wheel: Path, tmp_path: Path
) -> None:
    run = next(a for i, a in build_stage() if i == "RUN" and "pip wheel" in a)
    check = shlex.split(run.split("&&", 1)[1])
    assert check[:2] == ["python", "-c"], check
    folder = pip_wheel_arguments(Path("/wheels"))  # the Dockerfile's own folder
    assert "/wheels" in folder
    good = subprocess.run(
        [sys.executable, "-c", check[2].replace("/wheels", str(wheel.parent))],
        capture_output=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    for name, extension in EXTENSIONS.items():  # either one missing is refused
        bare = tmp_path / f"without-{name}"
        bare.mkdir()
        with zipfile.ZipFile(wheel) as full, zipfile.ZipFile(bare / wheel.name, "w") as stripped:
            for item in full.infolist():
                if not extension.fullmatch(item.filename):
                    stripped.writestr(item, full.read(item))
        bad = subprocess.run(
            [sys.executable, "-c", check[2].replace("/wheels", str(bare))], capture_output=True, check=False
        )
        assert bad.returncode != 0, name


def test_the_installed_wheel_walks_with_the_compiled_page_stat(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); from guard.backup.walk import statpage; "
        "from guard.fs import pathsets; "
        "print(statpage.__file__, statpage.implementation(), pathsets.__file__, pathsets.implementation())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(target)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    where, walk, files_where, files_walk = done.stdout.split()
    assert where.startswith(str(target)), done.stdout + done.stderr  # the wheel's, not the worktree's
    assert files_where.startswith(str(target)), done.stdout + done.stderr
    assert walk == files_walk == "compiled"


def test_the_image_installs_the_tools_its_processes_run() -> None:
    # pg_dump/pg_restore for backups and drills, rclone for the nightly copy to BACKUP_REMOTES
    final = DOCKERFILE.read_text().split("\nFROM ")[-1]
    installs = " ".join(line for line in final.splitlines() if "apt-get install" in line).split()
    assert {"postgresql-client", "rclone"} <= set(installs)
