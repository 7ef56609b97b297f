"""The image's build without Docker: the build stage of compose/Dockerfile run on this machine, its
COPY and RUN lines in their order, with the container's `/` at a temporary folder; then the final
stage's ENTRYPOINT, CMD and HEALTHCHECK run from the result.

What differs from `docker build`: the interpreter is this test environment's Python 3.11, not the
base image's. The RUN lines are run as written, so pip downloads the locked files from the package
index, as the image's build does (the one test that reaches past loopback: the lock's hashes can
only be proven against the real files), and installs them with --require-hashes, which also proves
the lock complete: pip refuses any dependency the lock does not pin with a hash."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

import movers3
from tests.support import dockerfile, lockfile

pytestmark = pytest.mark.acceptance

REPO = dockerfile.DOCKERFILE.parents[1]


def inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def installed(python: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution that interpreter sees."""
    listed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {canonicalize_name(name): version for name, version in json.loads(listed.stdout).items()}


def run_build_stage(stage: dockerfile.Stage, root: Path, env: dict[str, str]) -> list[str]:
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
        else:
            pytest.fail(f"the build stage has an instruction this test does not run: {instruction}")
    return ran


def test_the_dockerfile_build_stage_makes_a_working_install(tmp_path):
    build, final = dockerfile.stages()
    assert build.name == "build"
    root = tmp_path / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MOVERS3", "PYTHON"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    ran = run_build_stage(build, root, env)
    assert [r.split()[:5] for r in ran] == [
        ["python", "-m", "venv", '"$TOOLS"', "&&"],
        ["python", "-m", "venv", "--without-pip", '"$VENV"'],
        ['"$TOOLS/bin/python"', "-m", "pip", "--python", '"$VENV/bin/python"'],
        ['"$TOOLS/bin/python"', "-m", "pip", "wheel", "--no-deps"],
        ['"$TOOLS/bin/python"', "-m", "pip", "--python", '"$VENV/bin/python"'],
    ]
    # Exactly what the locks pin: the build tools at their versions, and in the image's virtualenv
    # the runtime lock and movers3, nothing more (no pip, no setuptools), every requirement met.
    locked = {name: pin.version for name, pin in lockfile.pins(lockfile.BUILD_TOOLS_LOCK).items()}
    tools = installed(Path(env["TOOLS"]) / "bin" / "python")
    assert {name: tools.get(name) for name in locked} == locked
    venv_python = Path(env["VENV"]) / "bin" / "python"
    locked = {name: pin.version for name, pin in lockfile.pins(lockfile.RUNTIME_LOCK).items()}
    assert installed(venv_python) == {**locked, "movers3": movers3.__version__}
    checked = subprocess.run(
        [str(Path(env["TOOLS"]) / "bin" / "python"), "-m", "pip", "--python", str(venv_python), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (wheel,) = Path(env["WHEELS"]).glob("movers3-*.whl")
    assert f"movers3-{movers3.__version__}.dist-info/licenses/LICENSE" in zipfile.ZipFile(wheel).namelist()

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
