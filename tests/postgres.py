"""A throwaway PostgreSQL cluster for the worker tests, or one named by AUTOML_TEST_POSTGRES.

initdb and pg_ctl (Debian's postgresql package, which .ci/run installs) start a cluster in
a temporary folder, listening on a free loopback port only; it is stopped and deleted
after the tests. PostgreSQL refuses to run as root, so as root the cluster runs as the
`postgres` user that the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ([shutil.which("initdb")] if shutil.which("initdb") else [])
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_url():
    """Yield an SQLAlchemy URL of an empty database, or a reason why there is none."""
    if os.environ.get("AUTOML_TEST_POSTGRES"):
        yield os.environ["AUTOML_TEST_POSTGRES"], None
        return
    binaries = _binaries()
    if binaries is None:
        yield None, "no PostgreSQL: install Debian's postgresql package or set AUTOML_TEST_POSTGRES"
        return
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="automl-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            yield None, "running as root and there is no postgres user to run PostgreSQL as"
            return
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "automl")
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        shutil.rmtree(folder, ignore_errors=True)
        yield None, f"could not start a throwaway PostgreSQL: {detail.strip().splitlines()[-1] if detail.strip() else exc}"
        return
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/automl", None
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)
