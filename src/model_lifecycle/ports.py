"""``python -m model_lifecycle.ports HOST PORT WHAT VARIABLE``: whether a local port is
free before ``make ui`` or ``make serve`` starts a server on it. Their servers (uvicorn)
log "Address already in use" and exit with status 0, so a script or a user reading only
the last line would take the clash for a running server; this says it in one sentence
with exit status 1 instead."""

from __future__ import annotations

import re
import socket
import sys


def taken(host: str, port: int) -> bool:
    """Whether another program listens on (or holds) ``port`` of ``host``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def connection_failure(text: str) -> str | None:
    """``Connection refused`` (the OS's words) out of requests' and urllib3's nested
    repr of a failed connection, or None when ``text`` holds none."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found.group(1) if found else None


def main(argv: list[str] | None = None) -> int:
    host, port, what, variable = argv if argv is not None else sys.argv[1:]
    if not port.isdigit() or not 0 < int(port) < 65536:
        print(f"Error: {variable}={port} is not a port number: give one from 1 to 65535, "
              f"e.g. `{what} {variable}=5002`.", file=sys.stderr)
        return 1
    if taken(host, int(port)):
        print(f"Error: port {port} on {host} is taken by another program (an earlier "
              f"`{what}` still running?): stop it, or choose another port with "
              f"`{what} {variable}=<port>`.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
