"""The two UIs in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright's Python package; no browser download) opens

* the static site of ``kedro viz build`` and finds every node of every registered
  pipeline in the graph;
* the MLflow UI on the store of a tiny lifecycle and finds the run's metrics, the
  registered model, its versions and the ``champion`` alias.

Without Chromium or Playwright the tests skip, except in CI (``CI`` set, as ``.ci/run``
does), where they fail. The screenshots in docs/images come from these tests:
``SCREENSHOTS=1`` (``make screenshots``) writes them there; otherwise they go to a
temporary folder, so a test run changes nothing in the repository.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT, scratch_project

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # reported by the ``browser`` fixture
    sync_playwright = None

MODEL = "model-lifecycle"
EXPERIMENT = "model-lifecycle"
VARIANTS = ("finetuned", "pruned", "quantized", "distilled")

# MLflow 3 opens its "Assistant" panel on a first visit and defaults to the GenAI
# sidebar; seed localStorage so the pages look like a classic ML setup.
MLFLOW_INIT = """
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
"""
HIDE_ASSISTANT_BUTTON = "[data-assistant-ui] { display: none !important; }"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [what for what, absent in (
        ("Playwright's Python package (pip install -e '.[dev]')", sync_playwright is None),
        ("Chromium (apt-get install chromium)", chromium is None)) if absent]
    if missing:
        message = f"the browser tests need {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; in CI they must run, not skip", pytrace=False)
        pytest.skip(message)
    expect.set_options(timeout=30_000)  # the MLflow UI's first page takes seconds on 2 cores
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium,
                                              args=["--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that reaches only 127.0.0.1 (kedro-viz asks Google for its font)."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/images with ``SCREENSHOTS`` set, else a temporary folder."""
    if os.environ.get("SCREENSHOTS"):
        return PROJECT_ROOT / "docs" / "images"
    return tmp_path_factory.mktemp("screenshots")


def _screenshot(page: Page, path: Path) -> None:
    """A screenshot once the page stands still (two in a row alike; graphs zoom to fit
    and tables fade in), or the last one after 10 s; for the docs only (``SCREENSHOTS``),
    else the page as it is."""
    shot = page.screenshot()
    deadline = time.monotonic() + (10 if os.environ.get("SCREENSHOTS") else 0)
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        shot, previous = page.screenshot(), shot
        if shot == previous:
            break
    path.write_bytes(shot)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- kedro viz -------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def viz_site(browser: Browser, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[str, dict]]:
    """``kedro viz build`` of a scratch copy of the project, served over HTTP; returns
    its URL, every registered pipeline's task names and its namespaces. (``browser``
    first: without one, fail or skip at once.)"""
    work = scratch_project(tmp_path_factory.mktemp("viz") / "work")
    built = subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=work,
                           capture_output=True, text=True, timeout=300, check=False)
    site = work / "build"
    # `kedro viz build` reports its errors on stdout and still exits 0
    assert (site / "index.html").exists() and (site / "api" / "main").exists(), (
        f"kedro viz build made no site:\n{built.stdout}\n{built.stderr}")
    bootstrap_project(work)
    from kedro.framework.project import pipelines  # noqa: PLC0415 (after bootstrap)

    # a namespace's nodes (`transfer`'s `source.*`) are drawn as one collapsed node named
    # after it, not as tasks
    expected = {name: sorted(node.name for node in pipeline.nodes if not node.namespace)
                for name, pipeline in pipelines.items()}
    namespaces = {name: sorted({node.namespace for node in pipeline.nodes if node.namespace})
                  for name, pipeline in pipelines.items()}
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", expected, namespaces
    finally:
        server.shutdown()
        server.server_close()


# kedro-viz keeps its settings in localStorage: no "new feature" tour over the graph
VIZ_INIT = "localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false}));"


def _graph_tasks(page: Page, expected: list[str]) -> list[str]:
    """The task nodes' labels in the graph once they are ``expected`` (nodes of the
    previous pipeline fade out first), or after 15 s."""
    labels = page.locator("g.pipeline-node--task .pipeline-node__text")
    deadline = time.monotonic() + 15
    while True:
        shown = sorted(labels.all_text_contents())
        if shown == expected or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(100)


def test_kedro_viz_shows_every_node_of_every_pipeline(page, viz_site, shots):
    url, expected, namespaces = viz_site
    assert {"__default__", "ingest", "evaluate", "register"} <= set(expected)
    page.add_init_script(VIZ_INIT)
    page.goto(url)
    assert _graph_tasks(page, expected["__default__"]) == expected["__default__"]
    _screenshot(page, shots / "kedro-viz.png")
    menu = page.locator("[data-test=kedro-pipeline-selector]")
    menu.click()  # the sidebar's menu offers every pipeline
    expect(menu.get_by_role("option")).to_have_count(len(expected))  # once it has opened
    assert sorted(menu.get_by_role("option").all_text_contents()) == sorted(expected)
    for name, nodes in expected.items():
        # opened by its link (?pid=, what the menu sets), twice as fast as the menu
        page.goto(f"{url}?pid={urllib.parse.quote(name)}")
        expect(menu.locator(".dropdown__label")).to_have_text(name)
        assert _graph_tasks(page, nodes) == nodes, name
        shown = page.locator("g.pipeline-node .pipeline-node__text").all_text_contents()
        assert set(namespaces[name]) <= {label.strip() for label in shown}, name


# -- MLflow UI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlflow_ui(browser: Browser, lifecycle) -> Iterator[str]:
    # ``browser`` first: without one, fail or skip before the shared lifecycle runs
    """``mlflow server`` (what ``make ui`` runs) on the tiny lifecycle's store."""
    uri = f"sqlite:///{lifecycle.work / 'mlflow.db'}"
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # as `make ui`
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=lifecycle.work, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:  # refused, reset, or no answer in time (TimeoutError)
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{server.stdout.read().decode()}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def store(lifecycle) -> mlflow.MlflowClient:
    uri = f"sqlite:///{lifecycle.work / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _mlflow_page(page: Page) -> Page:
    page.add_init_script(MLFLOW_INIT)
    return page


def test_mlflow_ui_shows_the_run_and_its_metrics(page, mlflow_ui, store, shots):
    experiment = store.get_experiment_by_name(EXPERIMENT)
    run = store.search_runs([experiment.experiment_id], "attributes.run_name = '__default__'",
                            order_by=["attributes.start_time ASC"])[0]  # the `kedro run`
    metrics = run.data.metrics
    assert {f"evaluate.{variant}.accuracy" for variant in VARIANTS} <= set(metrics)
    page = _mlflow_page(page)
    page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs")
    link = page.locator(f'[role=gridcell] a[href*="/runs/{run.info.run_id}"]')
    expect(link).to_have_text(run.info.run_name)
    _runs_table_screenshot(page, shots / "mlflow-runs.png")

    link.click()  # the run's page: its overview lists every metric with its value
    expect(page.get_by_text(f"Metrics ({len(metrics)})", exact=True)).to_be_visible()
    table = page.get_by_role("table").filter(has=page.get_by_text("Metric", exact=True))
    shown = dict(table.locator("[role=row]:has([role=cell])").evaluate_all(
        "rows => rows.map(row => [...row.querySelectorAll('[role=cell]')]"
        ".map(cell => cell.innerText.trim()))"))
    assert sorted(shown) == sorted(metrics)
    for name, value in metrics.items():
        assert float(shown[name]) == pytest.approx(value, rel=1e-3, abs=1e-9), name


def _runs_table_screenshot(page: Page, path: Path) -> None:
    """The runs table with every metric and parameter column switched on."""
    page.add_style_tag(content=HIDE_ASSISTANT_BUTTON)
    page.get_by_role("button", name="Columns", exact=True).click()
    columns = page.get_by_role("dialog")
    for label in ("Dataset", "Metrics", "Parameters"):  # "Dataset" is always "-" here
        toggle = columns.get_by_text(re.compile(rf"^{label}( \(\d+\))?$"))
        if toggle.count():
            toggle.click()
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring
    page.mouse.move(1599, 0)  # no hover highlight on a row
    _screenshot(page, path)


def test_mlflow_ui_shows_the_registered_model_its_versions_and_aliases(
        page, mlflow_ui, store, shots):
    versions = store.search_model_versions(f"name='{MODEL}'")
    aliases = store.get_registered_model(MODEL).aliases
    assert {v.tags["variant"] for v in versions} >= set(VARIANTS)
    assert {"baseline", "champion"} <= set(aliases)
    page = _mlflow_page(page)
    page.set_viewport_size({"width": 1600, "height": 4000})  # every version's tags in view
    page.goto(f"{mlflow_ui}/#/models/{MODEL}")
    rows = {}
    for version in versions:  # each version's row, with its variant tag
        link = page.get_by_role("link", name=f"Version {version.version}", exact=True)
        rows[str(version.version)] = row = page.get_by_role("row").filter(has=link)
        expect(row.get_by_role("status", name="variant", exact=True)).to_have_text(
            re.compile(rf"^variant\s*:\s*{re.escape(version.tags['variant'])}$"))
    for alias, version in aliases.items():  # "@ champion" in the champion's row only
        expect(page.get_by_role("status", name=alias, exact=True)).to_have_count(1)
        expect(rows[str(version)].get_by_role("status", name=alias, exact=True)
               ).to_have_text(re.compile(rf"^@\s*{re.escape(alias)}$"))
    page.add_style_tag(content=HIDE_ASSISTANT_BUTTON)
    page.mouse.move(1599, 0)
    bottom = max(row.bounding_box()["y"] + row.bounding_box()["height"]
                 for row in rows.values())
    page.set_viewport_size({"width": 1600, "height": int(bottom) + 90})  # and the pager
    _screenshot(page, shots / "mlflow-registered-model.png")
