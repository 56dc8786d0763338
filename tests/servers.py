"""Throw-away servers for the shared-tracking test: a PostgreSQL cluster in a temporary folder
(Debian's server binaries, run as the `postgres` user when the tests run as root, since the server
refuses root) and an `mlflow server` on it that serves the artifacts itself."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

MLFLOW_START_TIMEOUT_S = 180  # it creates its tables first: about 25 s on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or where Debian's postgresql package puts them."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def why_no_postgres() -> str | None:
    """Why no PostgreSQL server can be started here, or None."""
    if postgres_bin() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl); on Debian: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no `postgres` user to run the server as"
    return None


@contextmanager
def postgres_cluster():
    """A new cluster on 127.0.0.1 and a free port; yields its SQLAlchemy URI (psycopg 3)."""
    bin_dir = postgres_bin()
    user = "postgres" if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="genbench-pg-"))
    if user:
        shutil.chown(home, user)
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([str(bin_dir / args[0]), *args[1:]], user=user, cwd=home, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    try:
        pg("initdb", "-D", str(home / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        pg("pg_ctl", "-D", str(home / "data"), "-l", str(home / "log"), "-w", "start", "-o",
           f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            pg("pg_ctl", "-D", str(home / "data"), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path):
    """`mlflow server` on 127.0.0.1 and a free port, storing artifacts under `artifacts` and
    serving them itself (clients never see that folder); yields its URL."""
    port = free_port()
    log = open(artifacts.parent / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_uri,
         "--artifacts-destination", artifacts.as_uri(), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
        while not _answers(url + "/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (artifacts.parent / "mlflow-server.log").read_text()[-2000:]
                raise AssertionError(f"mlflow server did not start (exit {server.poll()}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False
