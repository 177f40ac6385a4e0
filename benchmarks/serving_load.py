"""Serving under load: ``mlflow models serve`` of the digits champion (as ``make serve``
starts it) against the same registered model called in process.

Runs the default lifecycle in a scratch project (``kedro run``; ``--reuse`` keeps a
previous one), serves its champion on 127.0.0.1 with ``--workers`` uvicorn workers, and
sends it PNG test images from a bounded load generator (threads with keep-alive
``http.client`` connections: a fixed number of requests per cell, stopped earlier by a
duration cap) at each concurrency, with single-image and 64-image requests. Records
requests/s, images/s and p50/p95/p99 latency per cell, and the in-process pyfunc's
images/s on the same images (``predict`` called one request's images at a time), so the
HTTP overhead is a number. The load generator shares the machine's cores with the server.

Goals: at concurrency 8 with single-image requests, at least 50% of the in-process
pyfunc's images/s and p99 under 100 ms; 64-image requests at least 1,000 images/s.

    python -m benchmarks.serving_load [--workers 1 2] [--requests 1000] [--duration 20]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.common import (
    DEFAULT_WORK,
    KEDRO_ENV,
    kedro_run,
    latest_version,
    scratch_project,
    write_result,
)

MODEL = "model-lifecycle"
GOALS = ("concurrency 8, single-image requests: >= 50% of the in-process pyfunc's "
         "images/s and p99 < 100 ms; 64-image requests: >= 1,000 images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "serving_load")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="uvicorn worker counts to serve with, one server each")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64],
                        help="images per request")
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests per cell (and in-process calls per batch size)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds at most per cell: it stops earlier by itself")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the scratch project of a previous run (no kedro run)")
    args = parser.parse_args()

    project = args.work / "project"
    if not (args.reuse and (project / "mlflow.db").exists()):
        project = scratch_project(args.work)
        kedro_run(project)
    uri = f"sqlite:///{project}/mlflow.db"
    pngs = _test_pngs(project)
    bodies = {batch: _bodies(pngs, batch) for batch in args.batch}
    model = _registered(uri)
    expected = list(model.predict(pd.DataFrame({"image": pngs}))["class"])
    before = _in_process(model, pngs, args.batch, args.requests, args.duration)
    servers = {}
    for workers in args.workers:
        with _server(project, uri, workers, args.work / f"server_w{workers}.log") as port:
            _check_answers(port, pngs, expected)
            cells = []
            for batch in args.batch:
                _load(port, bodies[batch], 2 * workers, 8 * workers, 60.0)  # warm-up
                for concurrency in args.concurrency:
                    cell = _load(port, bodies[batch], concurrency, args.requests,
                                 args.duration)
                    cell = {"batch": batch, "concurrency": concurrency, **cell}
                    print(f"workers {workers}, {batch} image(s)/request, concurrency "
                          f"{concurrency}: {cell['requests_per_s']} req/s, "
                          f"{cell['images_per_s']} img/s, p50 {cell['p50_ms']} ms, p99 "
                          f"{cell['p99_ms']} ms, {cell['errors']} errors", flush=True)
                    cells.append(cell)
            servers[str(workers)] = cells
    in_process = _best(before, _in_process(model, pngs, args.batch, args.requests,
                                           args.duration))
    for cell in (cell for cells in servers.values() for cell in cells):
        cell["vs_in_process"] = round(
            cell["images_per_s"] / in_process[str(cell["batch"])]["images_per_s"], 3)
    path = write_result("serving_load", {
        "command": "python -m benchmarks.serving_load " + " ".join(sys.argv[1:]),
        "server": f"mlflow models serve -m models:/{MODEL}@champion --env-manager local "
                  "--workers <workers> (make serve WORKERS=<workers>)",
        "images": f"{len(pngs)} digits test images, {_shape(pngs[0])} PNG, base64 in "
                  "dataframe_split JSON",
        "client": "threads with keep-alive http.client connections on 127.0.0.1, on the "
                  "same cores as the server",
        "requests_per_cell": args.requests, "duration_cap_s": args.duration,
        "in_process": in_process, "servers": servers,
        "checks": _checks(servers, in_process), "goal": GOALS,
    })
    print(f"wrote {path}")


def _test_pngs(project: Path, count: int = 256) -> list[bytes]:
    """The first ``count`` test images of the project's split, as PNG files."""
    images = np.load(latest_version(project, "data/03_primary/images.npz"))["images"]
    test = np.load(latest_version(project, "data/05_model_input/splits.npz"))["test"][:count]
    pngs = []
    for image in images[test]:
        buffer = io.BytesIO()
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(
            buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def _shape(png: bytes) -> str:
    with Image.open(io.BytesIO(png)) as image:
        return f"{image.width}×{image.height} {image.mode}"


def _bodies(pngs: list[bytes], batch: int, count: int = 32) -> list[bytes]:
    """``count`` request bodies of ``batch`` images each, cycling through ``pngs``."""
    encoded = [base64.b64encode(png).decode() for png in pngs]
    return [json.dumps({"dataframe_split": {"columns": ["image"], "data": [
        [encoded[(start * batch + i) % len(encoded)]] for i in range(batch)]}}).encode()
        for start in range(count)]


def _registered(uri: str) -> Any:
    """The registered champion, loaded in this process."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")


def _in_process(model: Any, pngs: list[bytes], batches: list[int], calls: int,
                duration: float) -> dict[str, dict[str, float]]:
    """Images/s of the model's ``predict`` on ``batch`` images a call, one call at a time
    (``calls`` calls, or fewer at ``duration`` seconds)."""
    result = {}
    for batch in batches:
        frames = [pd.DataFrame({"image": [pngs[(start * batch + i) % len(pngs)]
                                          for i in range(batch)]}) for start in range(32)]
        for frame in frames[:4]:  # warm-up
            model.predict(frame)
        done, tic = 0, time.perf_counter()
        deadline = tic + duration
        while done < calls and time.perf_counter() < deadline:
            model.predict(frames[done % len(frames)])
            done += 1
        seconds = time.perf_counter() - tic
        result[str(batch)] = {"calls": done, "seconds": round(seconds, 2),
                              "ms_per_call": round(1000 * seconds / done, 3),
                              "images_per_s": round(done * batch / seconds, 1)}
        print(f"in process, {batch} image(s)/call: {result[str(batch)]['images_per_s']} "
              "img/s", flush=True)
    return result


def _best(first: dict[str, dict], second: dict[str, dict]) -> dict[str, dict]:
    """Per batch size, the faster of two in-process measurements (before and after the
    servers ran), with both figures: the reference the server is compared with."""
    best = {}
    for batch, row in first.items():
        other = second[batch]
        best[batch] = {**max(row, other, key=lambda r: r["images_per_s"]),
                       "images_per_s_before_after": [row["images_per_s"],
                                                     other["images_per_s"]]}
    return best


@contextlib.contextmanager
def _server(project: Path, uri: str, workers: int, log: Path) -> Iterator[int]:
    """``mlflow models serve`` of the champion with ``workers`` workers on a free port:
    the port, once /ping answers; stopped on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **KEDRO_ENV, "MLFLOW_TRACKING_URI": uri,
           # the scoring server is started as `uvicorn …`, found on PATH
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with log.open("wb") as handle:  # a file, not a pipe: a full pipe would block it
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m",
             f"models:/{MODEL}@champion", "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port), "--workers", str(workers)],
            cwd=project, env=env, start_new_session=True, stdout=handle,
            stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                    break
                except OSError:  # refused, reset, or no answer in time (TimeoutError)
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the server did not start: see {log}") from None
                    time.sleep(0.5)
            yield port
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def _check_answers(port: int, pngs: list[bytes], expected: list[str]) -> None:
    """The server answers the test images as the model does in process."""
    body = _bodies(pngs, len(pngs), count=1)[0]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answers = json.loads(response.read())["predictions"]
    connection.close()
    if [a["class"] for a in answers] != expected:
        raise SystemExit("the server's classes differ from the in-process model's")


def _load(port: int, bodies: list[bytes], concurrency: int, requests: int,
          duration: float) -> dict[str, Any]:
    """``requests`` POSTs of ``bodies`` (in turn) from ``concurrency`` threads, each with
    its own keep-alive connection; stops at ``duration`` seconds whatever is left."""
    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()
    deadline = start + duration
    batch = len(json.loads(bodies[0])["dataframe_split"]["data"])

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, failed = [], 0
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            tic = time.perf_counter()
            try:
                connection.request("POST", "/invocations", bodies[i % len(bodies)],
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()  # reconnects on the next request
                ok = False
            if ok:
                mine.append(time.perf_counter() - tic)
            else:
                failed += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"requests": len(latencies), "errors": errors[0], "seconds": round(seconds, 2),
            "stopped_by_duration_cap": len(latencies) + errors[0] < requests,
            "requests_per_s": round(len(latencies) / seconds, 1),
            "images_per_s": round(len(latencies) * batch / seconds, 1),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)}}


def _checks(servers: dict[str, list[dict]], in_process: dict[str, Any]) -> dict[str, Any]:
    """The goals, per worker count, where the cells they name were measured."""
    checks = {}
    for workers, cells in servers.items():
        by = {(c["batch"], c["concurrency"]): c for c in cells}
        check: dict[str, Any] = {}
        if (1, 8) in by:
            cell = by[(1, 8)]
            check["c8_single_vs_in_process"] = cell["vs_in_process"]
            check["c8_single_p99_ms"] = cell["p99_ms"]
            check["c8_single_met"] = cell["vs_in_process"] >= 0.5 and cell["p99_ms"] < 100
        best = max((c for c in cells if c["batch"] == 64), key=lambda c: c["images_per_s"],
                   default=None)
        if best:
            check["b64_best_images_per_s"] = best["images_per_s"]
            check["b64_best_concurrency"] = best["concurrency"]
            check["b64_met"] = best["images_per_s"] >= 1000
        checks[workers] = check
    return checks


if __name__ == "__main__":
    main()
