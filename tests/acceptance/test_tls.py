"""The ledger over TLS: a MariaDB of its own, with a certificate made by openssl for this session and an
account that REQUIRES SSL, reached through `MYSQL_URL`'s TLS parameters (SQLAlchemy's pymysql names);
a server whose certificate comes from another CA is refused with one line and exit 3. (Without TLS
parameters PyMySQL still encrypts when the server offers it, but checks nothing: `ssl_ca` is what makes
movers3 check the certificate and the host name.)"""

import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.helpers import run_cli
from tests.support.services import DATABASE, MariaDB

pytestmark = pytest.mark.acceptance

USER = "m3_tls"
# Percent-encoded in the URL, as SQLAlchemy expects: '@', '/', '#', '%' and ':' all mean something there.
PASSWORD = "tls-p@ss/w#rd%:0123456789"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(where: Path, name: str) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        cwd=where,
    )


@pytest.fixture(scope="module")
def tls_db():
    base = Path(tempfile.mkdtemp(prefix="m3s-", dir="/tmp"))
    base.chmod(0o755)
    certs = base / "certs"
    certs.mkdir()
    make_ca(certs, "ca")
    make_ca(certs, "other-ca")
    (certs / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=certs,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.pem",
        cwd=certs,
    )
    shutil.chown(certs, "mysql", "mysql")
    for f in certs.iterdir():
        shutil.chown(f, "mysql", "mysql")
        f.chmod(0o644)
    db = MariaDB(
        base / "db",
        options=[
            f"--ssl-ca={certs / 'ca.pem'}",
            f"--ssl-cert={certs / 'server.pem'}",
            f"--ssl-key={certs / 'server.key'}",
        ],
    )
    try:
        db.start()
        db.create_database()
        with db.admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE USER '{USER}'@'%%' IDENTIFIED BY %s REQUIRE SSL", (PASSWORD,))
            cur.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'%'")
        yield db, certs
    finally:
        db.stop()
        shutil.rmtree(base, ignore_errors=True)


def url(db: MariaDB, query: str = "") -> str:
    return f"mysql+pymysql://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{db.port}/{DATABASE}" + query


def test_the_ledger_over_tls_verified_by_its_ca(tls_db, route):
    db, certs = tls_db
    env = route.env("worker", "m3_worker", MYSQL_URL=url(db, f"?ssl_ca={certs / 'ca.pem'}&ssl_verify_identity=true"))
    assert "ledger schema is at version" in run_cli("init", env=env).stdout
    status = run_cli("status", env=env)
    assert "pending" in status.stdout and PASSWORD not in status.stdout + status.stderr


def test_a_server_certificate_from_another_ca_fails_with_one_line(tls_db, route):
    db, certs = tls_db
    env = route.env("worker", "m3_worker", MYSQL_URL=url(db, f"?ssl_ca={certs / 'other-ca.pem'}"))
    refused = run_cli("status", env=env, check=False)
    print(f"TLS other CA: exit {refused.returncode}: {refused.stderr.strip()}")
    assert refused.returncode == 3 and refused.stderr.count("\n") == 1, refused.stderr
    line = refused.stderr.strip()
    assert line.startswith("movers3: error: TLS with the ledger database at mysql://m3_tls@127.0.0.1:")
    assert "certificate verify failed" in line and "Traceback" not in line and PASSWORD not in line
    assert quote(PASSWORD, safe="") not in line


def test_bad_tls_parameters_are_settings_errors(tls_db, route, tmp_path):
    db, certs = tls_db
    for query, expected in (
        (f"?ssl_ca={tmp_path / 'missing.pem'}", "ssl_ca names no readable file"),
        (f"?ssl_ca={certs / 'ca.pem'}&ssl_cert={certs / 'server.pem'}", "ssl_cert and ssl_key go together"),
        (f"?ssl_ca={certs / 'ca.pem'}&ssl_verify_cert=perhaps", "must be true or false"),
    ):
        result = run_cli("status", env=route.env("worker", "m3_worker", MYSQL_URL=url(db, query)), check=False)
        assert result.returncode == 2 and expected in result.stderr and PASSWORD not in result.stderr, result.stderr


def test_check_reports_the_encrypted_session(tls_db, route):
    db, certs = tls_db
    # COPY_TAGS=false: the `worker` identity holds the minimal worker's rights (tests/acceptance/test_check.py).
    env = route.env("worker", "m3_worker", MYSQL_URL=url(db, f"?ssl_ca={certs / 'ca.pem'}"), COPY_TAGS="false")
    result = run_cli("check", "--role", "migrator", env=env)
    tls = next(line for line in result.stdout.splitlines() if " ledger TLS " in line)
    print(tls)
    assert tls.startswith("ok ") and "encrypted (TLSv1." in tls
    assert tls.endswith("the server's certificate checked against ssl_ca, and its host name")
    assert PASSWORD not in result.stdout + result.stderr
