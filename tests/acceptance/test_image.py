"""The image's build without Docker: the build stage of compose/Dockerfile run on this machine, its
COPY and RUN lines in their order, with the container's `/` at a temporary folder; then the final
stage's ENTRYPOINT, CMD and HEALTHCHECK run from the result.

What differs from `docker build`, and why: no network (the rules of these tests), so pip works
offline (PIP_NO_INDEX, build isolation off: the test environment's setuptools builds the wheel) and
the new virtualenv sees the test environment's copies of the dependencies through a .pth file
instead of downloading them. movers3 itself is never taken from there: it is installed from the
wheel this build made."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support import dockerfile

pytestmark = pytest.mark.acceptance

REPO = dockerfile.DOCKERFILE.parents[1]


def inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def dependencies_without_movers3(tmp_path: Path) -> Path:
    """The test environment's installed packages, less movers3's own (editable) install."""
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "movers3" not in entry.name.lower() and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    return deps


def run_build_stage(stage: dockerfile.Stage, root: Path, env: dict[str, str], deps: Path) -> list[str]:
    workdir = root
    ran = []
    for instruction, args in stage.instructions:
        if instruction == "ENV":
            for name, value in dockerfile.env_pairs(args).items():
                env[name] = str(inside(root, value)) if value.startswith("/") else value
        elif instruction == "WORKDIR":
            workdir = inside(root, args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, target = shlex.split(args)
            for source in sources:
                destination = workdir / target / Path(source).name if target.endswith("/") else workdir / target
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(REPO / source, destination)
        elif instruction == "RUN":
            done = subprocess.run(
                ["/bin/sh", "-c", args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            ran.append(args)
            venv = Path(env.get("VENV", "/nonexistent"))
            site = next(venv.glob("lib/python3*/site-packages"), None)
            if site is not None and not (site / "_test_dependencies.pth").exists():
                (site / "_test_dependencies.pth").write_text(f"{deps}\n")
        else:
            pytest.fail(f"the build stage has an instruction this test does not run: {instruction}")
    return ran


def test_the_dockerfile_build_stage_makes_a_working_install(tmp_path):
    build, final = dockerfile.stages()
    assert build.name == "build"
    root = tmp_path / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MOVERS3", "PYTHON"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0"
    )  # pip's spelling of --no-build-isolation
    ran = run_build_stage(build, root, env, dependencies_without_movers3(tmp_path))
    assert [r.split()[:4] for r in ran] == [
        ["python", "-m", "pip", "wheel"],
        ["python", "-m", "venv", "--without-pip"],
        ["python", "-m", "pip", "--python"],
    ]

    # The final stage copies the build stage's virtualenv to the same place.
    (copy,) = final.all("COPY")
    _, source, target = copy.split()
    assert source == target and source == env["VENV"][len(str(root)) :]
    venv = inside(root, target)
    assert not (venv / "bin" / "pip").exists(), "no pip in the final virtualenv"

    final_env = dockerfile.env_pairs(final.one("ENV"))
    run_env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    run_env["PATH"] = final_env["PATH"].replace("$PATH", os.environ["PATH"]).replace(target, str(venv))
    run_env.update({k: str(inside(root, v)) if v.startswith("/") else v for k, v in final_env.items() if k != "PATH"})
    entrypoint = json.loads(final.one("ENTRYPOINT"))
    cmd = json.loads(final.one("CMD"))
    assert shutil.which(entrypoint[0], path=run_env["PATH"]) == str(venv / "bin" / "movers3")

    def run(*args):
        return subprocess.run(list(args), env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    helped = run(*entrypoint, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: movers3"), helped.stderr
    worker_help = run(*entrypoint, *cmd, "--help")
    assert worker_help.returncode == 0 and "--metrics-port" in worker_help.stdout and "examples:" in worker_help.stdout
    where = run(str(venv / "bin" / "python"), "-c", "import movers3, prometheus_client; print(movers3.__file__)")
    assert where.returncode == 0 and where.stdout.startswith(str(venv / "lib")), (where.stdout, where.stderr)
    sql = run(str(venv / "bin" / "python"), "-c", "from movers3.ledger import db; print(len(db.QUERIES))")
    assert sql.returncode == 0 and int(sql.stdout) > 10  # the .sql files are in the wheel

    # The image's HEALTHCHECK with no worker running: unhealthy (1), never Docker's reserved 2.
    health = final.one("HEALTHCHECK")
    command = json.loads(health.split("CMD", 1)[1])
    checked = run(*command)
    assert checked.returncode == 1 and "no heartbeat at" in checked.stderr, checked.stderr
    assert run_env["HEALTH_FILE"].startswith(str(root))
