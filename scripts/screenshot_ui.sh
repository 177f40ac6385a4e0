#!/usr/bin/env bash
# Take the MLflow UI screenshots used in the docs.
#
# Usage:
#   make ui                        # in another terminal (serves http://127.0.0.1:5000)
#   scripts/screenshot_ui.sh [UI_URL] [MODEL_NAME] [EXPERIMENT_NAME]
#
# Defaults: http://127.0.0.1:5000, model-lifecycle, model-lifecycle.
# Writes docs/images/mlflow-runs.png and docs/images/mlflow-registered-model.png.
#
# Needs Debian's Chromium (`apt-get install chromium`). Playwright (only the
# Python package; it drives the system Chromium) is installed once from PyPI
# into $SHOT_VENV (default ~/.cache/mlflow-screenshot-venv), not into .venv.
set -euo pipefail

UI_URL="${1:-http://127.0.0.1:5000}"
MODEL="${2:-model-lifecycle}"
EXPERIMENT="${3:-model-lifecycle}"
OUT_DIR="$(cd "$(dirname "$0")/.." && pwd)/docs/images"
SHOT_VENV="${SHOT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-screenshot-venv}"

CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$CHROMIUM" ]; then
  echo "error: Chromium is not installed; run 'sudo apt-get install chromium' and try again." >&2
  exit 1
fi

if ! "$SHOT_VENV/bin/python" -c "import playwright" 2>/dev/null; then
  echo "Installing Playwright into $SHOT_VENV (one-time)..." >&2
  python3 -m venv "$SHOT_VENV"
  "$SHOT_VENV/bin/pip" install --quiet "playwright>=1.50,<2"
fi

mkdir -p "$OUT_DIR"
exec "$SHOT_VENV/bin/python" - "$UI_URL" "$MODEL" "$EXPERIMENT" "$OUT_DIR" "$CHROMIUM" <<'PY'
import json, re, sys, urllib.error, urllib.parse, urllib.request
from playwright.sync_api import sync_playwright

url, model, experiment, out_dir, chromium = sys.argv[1:]
url = url.rstrip("/")

try:
    urllib.request.urlopen(f"{url}/health", timeout=10).close()
except (urllib.error.URLError, OSError):
    sys.exit(f"error: no MLflow UI is reachable at {url}; start it with 'make ui' in another terminal.")

def api(path, **params):
    """GET an MLflow REST endpoint; None if it answers 404 (no such experiment/model)."""
    try:
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(params)}", timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise

exp = api("experiments/get-by-name", experiment_name=experiment)
if exp is None:
    sys.exit(f"error: experiment '{experiment}' not found at {url}; run 'make run' first.")
if api("registered-models/get", name=model) is None:
    sys.exit(f"error: registered model '{model}' not found at {url}; run 'make run' first.")
exp_id = exp["experiment"]["experiment_id"]

# MLflow 3.x opens its "Assistant" side panel on first visit and defaults to the
# GenAI sidebar; pre-seed localStorage so the pages look like a classic ML setup.
INIT = """
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
"""
HIDE_ASSISTANT_BUTTON = "[data-assistant-ui] { display: none !important; }"

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.add_init_script(INIT)
    page.set_default_timeout(30_000)

    # (a) Runs table, with all metric and parameter columns switched on.
    page.goto(f"{url}/#/experiments/{exp_id}/runs")
    page.wait_for_selector('[role=gridcell] a[href*="/runs/"]')
    page.add_style_tag(content=HIDE_ASSISTANT_BUTTON)
    page.get_by_role("button", name="Columns", exact=True).click()
    columns = page.get_by_role("dialog")
    # Untick "Dataset" (always "-" here), tick every metric and parameter.
    for label in ("Dataset", "Metrics", "Parameters"):
        toggle = columns.get_by_text(re.compile(rf"^{label}( \(\d+\))?$"))
        if toggle.count():
            toggle.click()
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring
    page.mouse.move(1599, 0)  # no hover highlight on a table row
    page.wait_for_timeout(1000)
    page.screenshot(path=f"{out_dir}/mlflow-runs.png")

    # (b) Registered model page: versions table with aliases (tall enough for four
    # versions and their tags).
    page.set_viewport_size({"width": 1600, "height": 2100})
    page.goto(f"{url}/#/models/{urllib.parse.quote(model)}")
    page.wait_for_selector('a[href*="/versions/"]')
    page.add_style_tag(content=HIDE_ASSISTANT_BUTTON)
    page.wait_for_timeout(1000)
    page.screenshot(path=f"{out_dir}/mlflow-registered-model.png")
    browser.close()

print(f"wrote {out_dir}/mlflow-runs.png and {out_dir}/mlflow-registered-model.png")
PY
