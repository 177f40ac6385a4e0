"""`make ui` and `make serve` refuse a port another program holds in one sentence with a
failing exit status (their servers log the clash and exit with status 0)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from model_lifecycle import ports

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def listening():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_one_sentence_and_exit_status_1(listening, capsys):
    assert ports.main(["127.0.0.1", str(listening), "make ui", "UI_PORT"]) == 1
    said = capsys.readouterr().err.strip()
    assert said.count("\n") == 0
    assert f"port {listening} on 127.0.0.1 is taken" in said
    assert "`make ui UI_PORT=<port>`" in said


def test_a_free_port_passes(capsys):
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert ports.main(["127.0.0.1", str(port), "make serve", "SERVE_PORT"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("port", ["abc", "0", "70000", ""])
def test_a_port_that_is_no_number_is_named(port, capsys):
    assert ports.main(["127.0.0.1", port, "make serve", "SERVE_PORT"]) == 1
    assert f"SERVE_PORT={port} is not a port number" in capsys.readouterr().err


@pytest.mark.parametrize(("target", "variable"), [("ui", "UI_PORT"), ("serve", "SERVE_PORT")])
def test_make_checks_the_port_it_starts_the_server_on(target, variable):
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    shown = subprocess.run(["make", "-n", target, f"{variable}=5123"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert f'-m model_lifecycle.ports 127.0.0.1 "5123" "make {target}" {variable}' in shown
    assert "--port 5123" in shown


def test_a_port_given_in_args_is_refused_with_the_variable_to_use():
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    refused = subprocess.run(["make", "-n", "ui", "ARGS=--port 5002"], cwd=ROOT,
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert 'give the port with `make ui UI_PORT=<port>`, not ARGS="--port …"' in \
        refused.stderr
