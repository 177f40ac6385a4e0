"""A shared MLflow tracking server on PostgreSQL, in one folder of the project.

``make server`` (``python -m model_lifecycle.tracking_server start``) runs

* a throwaway PostgreSQL cluster in ``<folder>/pg`` (``initdb`` on the first start,
  ``pg_ctl`` afterwards) that listens on a unix socket in ``<folder>/socket`` only, with
  its own port number, no TCP and nothing changed system-wide;
* ``mlflow server`` with that database as its backend and registry store and
  ``<folder>/artifacts`` as its proxied artifact store (clients upload and download
  artifacts through the server), bound to 127.0.0.1.

PostgreSQL refuses to run as root: as root, its commands run as the ``postgres`` user
(Debian's package creates it) and the cluster folders belong to that user.
``make server-stop`` stops both; the data stays for the next start.

    python -m model_lifecycle.tracking_server start|stop|status [--folder data/server]
        [--port 5005] [--pg-port 5434] [--host 127.0.0.1] [--workers 2]
        [--allowed-hosts NAMES]

``probe(uri)`` tells within seconds whether a tracking server answers and can read its
store; the project's hooks call it before a run (MLflow's own client retries a dead
server for minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from model_lifecycle import ports
from model_lifecycle.errors import LifecycleError

DEFAULT_FOLDER = Path("data/server")
DEFAULT_PORT = 5005
DEFAULT_PG_PORT = 5434
DATABASE = USER = "mlflow"
POSTGRES_OS_USER = "postgres"  # who runs PostgreSQL when this runs as root
SOCKET_PATH_MAX = 107  # bytes in a unix socket path (sun_path) on Linux
INCLUDE_LINE = "include_if_exists = 'model_lifecycle.conf'\n"


def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server binaries (initdb, pg_ctl, postgres), or None.

    ``pg_config --bindir`` first (but Debian's libpq-dev ships a pg_config whose bindir
    has no server), then Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest),
    then ``PATH``.
    """
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 check=True).stdout.strip()
            candidates.append(Path(out))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=_version_key, reverse=True)]
    if pg_ctl := shutil.which("pg_ctl"):
        candidates.append(Path(pg_ctl).resolve().parent)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


class Problem(NamedTuple):
    """What is wrong with a tracking server: ``kind`` is ``down`` (nothing answers),
    ``store`` (it answers, its backend store does not) or ``foreign`` (something else
    answers at that address)."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return {"down": f"does not answer ({self.detail})",
                "store": f"answers but cannot read its backend store ({self.detail})",
                "foreign": f"answers as no MLflow tracking server does ({self.detail})",
                }[self.kind]


def probe(uri: str, *, connect_timeout: float = 3.0, read_timeout: float = 30.0
          ) -> Problem | None:
    """None when the MLflow tracking server at ``uri`` answers and can read its backend
    store, else the :class:`Problem`.

    Asks ``GET /api/2.0/mlflow/experiments/search`` once: a dead or unreachable server
    fails within ``connect_timeout`` seconds, a busy one gets ``read_timeout`` seconds to
    answer. An authentication refusal (401, 403) counts as answering (the run's own
    credentials are MLflow's business).
    """
    import requests  # noqa: PLC0415  (MLflow's own HTTP client library)

    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
    try:
        response = requests.get(url, params={"max_results": 1},
                                timeout=(connect_timeout, read_timeout))
    except requests.ConnectionError as exc:
        return Problem("down", _reason(exc))
    except requests.Timeout:
        return Problem("down", f"no answer within {read_timeout:.0f} s")
    code = response.status_code
    if code >= 500:
        return Problem("store", f"HTTP {code}")
    if code >= 400 and code not in (401, 403):
        return Problem("foreign", f"HTTP {code} for {url}")
    return None


def _reason(exc: Exception) -> str:
    """``Connection refused`` rather than urllib3's nested repr of the same."""
    return ports.connection_failure(str(exc)) or type(exc).__name__


@dataclass(frozen=True)
class TrackingServer:
    """The server and its database in ``folder``; ``start``, ``stop``, ``status``."""

    folder: Path = DEFAULT_FOLDER
    port: int = DEFAULT_PORT
    pg_port: int = DEFAULT_PG_PORT
    host: str = "127.0.0.1"
    workers: int = 2
    allowed_hosts: str | None = None  # MLflow's Host-header allow-list (--allowed-hosts)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder).absolute())
        for name in ("port", "pg_port"):
            value = getattr(self, name)
            if not 1024 <= value <= 65535:
                raise LifecycleError(f"--{name.replace('_', '-')} {value} is no usable port: "
                                     f"choose one between 1024 and 65535.")
        if self.workers < 1:
            raise LifecycleError(f"--workers {self.workers} must be at least 1.")

    # --- where things are ------------------------------------------------------------
    @property
    def cluster(self) -> Path:
        return self.folder / "pg"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def pid_file(self) -> Path:
        return self.folder / "mlflow.pid"

    @property
    def uri(self) -> str:
        """The tracking URI clients on this machine use."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def backend_store_uri(self) -> str:
        """SQLAlchemy's URI of the database, through the cluster's unix socket."""
        query = urllib.parse.urlencode({"host": str(self.socket_dir), "port": self.pg_port})
        return f"postgresql+psycopg2://{USER}@/{DATABASE}?{query}"

    def connect(self):
        """A psycopg2 connection to the MLflow database (for reading it directly)."""
        import psycopg2  # noqa: PLC0415  (only the server's users need the driver)

        return psycopg2.connect(host=str(self.socket_dir), port=self.pg_port, user=USER,
                                dbname=DATABASE)

    # --- start / stop / status -------------------------------------------------------
    def start(self, *, timeout: float = 180.0) -> None:
        """Start PostgreSQL (creating the cluster and database the first time), then the
        MLflow server; return once the server answers with its store readable."""
        bindir = self._bindir()
        self._prepare_folders()
        if not (self.cluster / "PG_VERSION").exists():
            self._initdb(bindir)
        running = self._server_pid()
        if running is None:  # workers a killed server left (they still hold the port)
            self._stop_server(grace=5.0)
        else:  # the same settings, or one sentence (not a server quietly left as it was)
            self._check_running_settings()
        if running is None and ports.taken(self.host, self.port):
            raise LifecycleError(
                f"Port {self.port} on {self.host} is taken by another program: choose "
                f"another with --port (make server ARGS='--port …') and point "
                f"server.mlflow_tracking_uri at it.")
        if self._postgres_running(bindir):
            self._check_running_port("PostgreSQL", "--pg-port", self._running_pg_port(),
                                     self.pg_port)
        else:
            self._write_settings()
            self._pg_ctl(bindir, "start", "-w", "-t", "60",
                         "-l", str(self.logs / "postgres.log"),
                         failure="PostgreSQL did not start")
        self._create_database()
        if running is not None:
            if probe(self.uri) is None:
                return  # already running
            self._stop_server()  # alive but not answering: start it afresh
        self._wait_until_ready(self._start_server(), timeout)

    def stop(self) -> bool:
        """Stop the MLflow server, then PostgreSQL (fast shutdown: open sessions are
        rolled back); nothing happens for what is not running. Returns whether anything
        was running."""
        running = self._server_group() is not None
        self._stop_server()
        bindir = postgres_bindir()
        if bindir is not None and self._postgres_running(bindir):
            running = True
            self._pg_ctl(bindir, "stop", "-w", "-t", "60", "-m", "fast",
                         failure="PostgreSQL did not stop")
        return running

    def as_running(self) -> TrackingServer:
        """This folder's server with the port and host its running MLflow server was
        started with (`status` without --port then asks the server that runs)."""
        recorded = self._recorded()
        if self._server_pid() is None or not isinstance(recorded.get("port"), int):
            return self
        return dataclasses.replace(self, port=recorded["port"],
                                   host=recorded.get("host") or self.host)

    def status(self) -> dict[str, bool]:
        """Whether PostgreSQL runs, and whether the MLflow server answers."""
        bindir = postgres_bindir()
        return {"postgres": bindir is not None and self._postgres_running(bindir),
                "mlflow": self._server_pid() is not None and probe(self.uri) is None}

    def _check_running_port(self, what: str, option: str, running: int | None,
                            wanted: int) -> None:
        if running is not None and running != wanted:
            raise LifecycleError(
                f"{what} of {self.folder} already runs on port {running}, not {wanted}: "
                f"stop it first (make server-stop), or start with {option} {running}.")

    def _check_running_settings(self) -> None:
        """The running MLflow server was started with this port, host, worker count and
        allowed hosts (as its pid file records; files of older servers record the port
        only), or one sentence: a `make server ARGS='--host 0.0.0.0'` that left the
        server on 127.0.0.1 would say it had started."""
        recorded = self._recorded()
        self._check_running_port("The MLflow server", "--port", recorded.get("port"),
                                 self.port)
        for option, key in (("--host", "host"), ("--workers", "workers"),
                            ("--allowed-hosts", "allowed_hosts")):
            if key in recorded and recorded[key] != getattr(self, key):
                raise LifecycleError(
                    f"The MLflow server of {self.folder} already runs with {option} "
                    f"{recorded[key]}, not {getattr(self, key)}: stop it first (make "
                    f"server-stop) and start it again with the new setting.")

    # --- PostgreSQL ------------------------------------------------------------------
    def _bindir(self) -> Path:
        bindir = postgres_bindir()
        if bindir is None:
            raise LifecycleError(
                "PostgreSQL's server binaries (initdb, pg_ctl) were not found in "
                "`pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH: install them "
                "(apt-get install postgresql).")
        return bindir

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _prepare_folders(self) -> None:
        path = self.socket_dir / f".s.PGSQL.{self.pg_port}"
        if len(str(path).encode()) > SOCKET_PATH_MAX:
            raise LifecycleError(
                f"The server folder {self.folder} is too deep for PostgreSQL's socket "
                f"({path} is over {SOCKET_PATH_MAX} bytes): choose a shorter --folder.")
        for folder in (self.folder, self.artifacts):
            folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.cluster, self.socket_dir, self.logs):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._as_root():
                _chown_to(folder, self._postgres_user())
        if self._as_root():
            reachable = subprocess.run(self._as_postgres(["test", "-w", str(self.cluster)]),
                                       capture_output=True, check=False).returncode == 0
            if not reachable:
                raise LifecycleError(
                    f"PostgreSQL refuses to run as root, so it runs as the "
                    f"'{POSTGRES_OS_USER}' user, which cannot reach {self.cluster}: choose a "
                    f"--folder every user may enter (each folder above it world-executable), "
                    f"or run as a normal user.")

    def _postgres_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(POSTGRES_OS_USER)
        except KeyError:
            raise LifecycleError(
                f"PostgreSQL refuses to run as root and there is no '{POSTGRES_OS_USER}' "
                f"user to run it as: create one (useradd --system {POSTGRES_OS_USER}) or run "
                f"as a normal user.") from None

    def _as_postgres(self, command: list[str]) -> list[str]:
        if not self._as_root():
            return command
        if shutil.which("runuser"):
            return ["runuser", "-u", POSTGRES_OS_USER, "--", *command]
        return ["su", POSTGRES_OS_USER, "-s", "/bin/sh", "-c", shlex.join(command)]

    def _run_postgres(self, command: list[str], *, failure: str,
                      check: bool = True) -> subprocess.CompletedProcess:
        # a neutral working directory: postgres must not inherit one it cannot read
        done = subprocess.run(self._as_postgres(command), capture_output=True, text=True,
                              cwd=self.folder if not self._as_root() else "/",
                              env={**os.environ, "LC_ALL": "C"}, check=False)
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LifecycleError(f"{failure} ({detail[0]}); its log is "
                                 f"{self.logs / 'postgres.log'}.")
        return done

    def _initdb(self, bindir: Path) -> None:
        self._run_postgres(
            [str(bindir / "initdb"), "-D", str(self.cluster), "-U", USER, "-A", "trust",
             "-E", "UTF8", "--no-locale"], failure=f"initdb could not create {self.cluster}")
        with (self.cluster / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# the project's settings (model_lifecycle.tracking_server)\n"
                       f"{INCLUDE_LINE}")

    def _write_settings(self) -> None:
        """Rewritten at every start, so a moved folder or a new --pg-port just works.
        Unix socket only, readable by its owner only: `trust` authentication then lets
        in this user (or root) and nobody else."""
        path = self.cluster / "model_lifecycle.conf"
        path.write_text(
            "listen_addresses = ''\n"
            f"port = {self.pg_port}\n"
            f"unix_socket_directories = '{_conf_string(self.socket_dir)}'\n"
            "unix_socket_permissions = 0700\n")
        if self._as_root():
            _chown_to(path, self._postgres_user())

    def _pg_ctl(self, bindir: Path, action: str, *args: str, failure: str) -> None:
        self._run_postgres([str(bindir / "pg_ctl"), "-D", str(self.cluster), action, *args],
                           failure=failure)

    def _postgres_running(self, bindir: Path) -> bool:
        if not (self.cluster / "PG_VERSION").exists():
            return False
        done = self._run_postgres([str(bindir / "pg_ctl"), "-D", str(self.cluster), "status"],
                                  failure="", check=False)
        return done.returncode == 0

    def _running_pg_port(self) -> int | None:
        """The port the running cluster was started with (postmaster.pid, line 4)."""
        try:
            return int((self.cluster / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def _create_database(self) -> None:
        import psycopg2  # noqa: PLC0415

        try:
            connection = psycopg2.connect(host=str(self.socket_dir), port=self.pg_port,
                                          user=USER, dbname="postgres")
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise LifecycleError(f"PostgreSQL in {self.cluster} does not let MLflow in "
                                 f"({reason}): see {self.logs / 'postgres.log'}.") from None
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            connection.close()

    # --- MLflow server ---------------------------------------------------------------
    def _start_server(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "mlflow", "server",
                   "--backend-store-uri", self.backend_store_uri,
                   "--artifacts-destination", str(self.artifacts),
                   "--host", self.host, "--port", str(self.port),
                   "--workers", str(self.workers)]
        if self.allowed_hosts:
            command += ["--allowed-hosts", self.allowed_hosts]
        env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
               # MLflow's background job runner serves GenAI features (prompt
               # optimisation, trace roll-ups) this project does not use: one process
               # and its database connections fewer. Set it to true to have them.
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
        with (self.logs / "mlflow.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=self.folder, env=env,
                                       start_new_session=True)  # its own process group
        self.pid_file.write_text(json.dumps({
            "pid": process.pid, "port": self.port, "host": self.host,
            "workers": self.workers, "allowed_hosts": self.allowed_hosts}))
        return process

    def _wait_until_ready(self, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        problem = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _end_group(process.pid, grace=0.0)  # workers it may have left
                self.pid_file.unlink(missing_ok=True)
                raise LifecycleError(
                    f"mlflow server stopped while starting: see {self.logs / 'mlflow.log'}.")
            problem = probe(self.uri, read_timeout=5.0)
            if problem is None:
                return
            time.sleep(0.5)
        self._stop_server()
        raise LifecycleError(f"mlflow server at {self.uri} {problem} after {timeout:.0f} s: "
                             f"see {self.logs / 'mlflow.log'}.")

    def _recorded(self) -> dict[str, Any]:
        """What the pid file records of the server this folder started ({} if none)."""
        try:
            recorded = json.loads(self.pid_file.read_text())
            return recorded if isinstance(recorded, dict) else {}
        except (OSError, ValueError):
            return {}

    def _server_pid(self) -> int | None:
        """The recorded server's process id while that process is alive and still an
        MLflow server (a recycled id is not mistaken for it)."""
        try:
            pid = int(self._recorded()["pid"])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if b"mlflow" in cmdline and _alive(pid) else None

    def _server_group(self) -> int | None:
        """The recorded server's process group while any MLflow process of it is alive:
        its uvicorn workers outlive a server killed with SIGKILL, and keep its port."""
        try:
            pgid = int(self._recorded()["pid"])
        except (KeyError, ValueError, TypeError):
            return None
        return pgid if _mlflow_group_alive(pgid) else None

    def _stop_server(self, grace: float = 20.0) -> None:
        pgid = self._server_group()
        if pgid is not None:
            _end_group(pgid, grace=grace)
        self.pid_file.unlink(missing_ok=True)


def _end_group(pgid: int, *, grace: float) -> None:
    """SIGTERM to the server's process group (it and its uvicorn workers), SIGKILL to
    what is left after ``grace`` seconds; returns once the group is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while _group_exists(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)


def _mlflow_group_alive(pgid: int) -> bool:
    """Whether a live process of process group ``pgid`` runs MLflow (its server or a
    uvicorn worker it started); a group id recycled by another program is not."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            if b"mlflow" in (stat.parent / "cmdline").read_bytes():
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited


def _group_exists(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)  # reap the server when this process started it
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _chown_to(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)


def _conf_string(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace("'", "''")


def _server_env_uri(conf: Path = Path("conf/server/mlflow.yml")) -> str | None:
    """The tracking URI the project's `server` environment logs to (None: no such file)."""
    import yaml  # noqa: PLC0415

    try:
        return (yaml.safe_load(conf.read_text()) or {}).get("server", {}).get(
            "mlflow_tracking_uri")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def _server_for(args: argparse.Namespace) -> TrackingServer:
    """The server the command line names: options not given are those of the folder's
    server while it runs (a stale pid file of one that died is not followed: a plain
    `make server` after a reboot binds 127.0.0.1, not the dead one's 0.0.0.0), else the
    defaults."""
    existing = TrackingServer(args.folder)
    last = existing._recorded() if existing._server_group() is not None else {}
    return TrackingServer(
        args.folder, port=args.port or last.get("port") or DEFAULT_PORT,
        pg_port=args.pg_port, host=args.host or last.get("host") or "127.0.0.1",
        workers=args.workers if args.workers is not None else last.get("workers", 2),
        allowed_hosts=(args.allowed_hosts if args.allowed_hosts is not None
                       else last.get("allowed_hosts")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_lifecycle.tracking_server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help="cluster, artifacts and logs (default: data/server)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"MLflow's port (default {DEFAULT_PORT})")
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT,
                        help="PostgreSQL's port (names its unix socket; no TCP)")
    # --port, --host, --workers and --allowed-hosts not given: those of the server of the
    # folder that runs (a plain `make server` while it runs is not a change of settings)
    parser.add_argument("--host", default=None,
                        help="interface MLflow binds to (default 127.0.0.1; 0.0.0.0: every "
                             "one; see docs/tracking-server.md before you do)")
    parser.add_argument("--workers", type=int, default=None,
                        help="MLflow server processes (default 2)")
    parser.add_argument("--allowed-hosts", default=None,
                        help="Host headers MLflow accepts, e.g. mlflow.team.example:5005 "
                             "(default: localhost and private addresses)")
    args = parser.parse_args(argv)
    try:
        server = _server_for(args)
        if args.action == "start":
            server.start()
            named = _server_env_uri()
            how = ("`kedro run --env=server`" if named in (None, server.uri) else
                   f"`kedro run --env=server` once conf/server/mlflow.yml names {server.uri} "
                   f"(it names {named})")
            print(f"MLflow tracking server on {server.uri} (PostgreSQL in {server.cluster}, "
                  f"artifacts in {server.artifacts}); runs log to it with {how}.")
        elif args.action == "stop":
            if server.stop():
                print(f"Stopped the MLflow tracking server and PostgreSQL of {server.folder}.")
            else:
                print(f"Nothing to stop: no tracking server or PostgreSQL of {server.folder} "
                      "was running.")
        else:
            server = server.as_running()
            state = server.status()
            mlflow_state = "answering" if state["mlflow"] else "stopped"
            if not state["mlflow"] and server._server_pid() is not None:
                problem = probe(server.uri)  # running, but not answering as it should
                mlflow_state = f"running, {problem}" if problem else "answering"
            print(f"PostgreSQL ({server.cluster}): "
                  f"{'running' if state['postgres'] else 'stopped'}; MLflow server "
                  f"({server.uri}): {mlflow_state}.")
            return 0 if all(state.values()) else 3
    except LifecycleError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
