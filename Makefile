# The two commands a new user needs: `make run` and `make test`.
# Both create .venv when missing and (re)install the project when
# pyproject.toml is newer than the last install; neither ever prompts.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Kedro's telemetry plugin must never ask or phone home (CI has no stdin
# and no internet); matplotlib draws off-screen.
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: run test viz viz-build ui ipython serve server server-stop screenshots bench bench-gpu lint docs clean-data install

run: $(STAMP)
	$(BIN)/kedro run $(ARGS)

# Two passes: the tests that keep to a wall-clock budget (marked `timing`) alone on idle
# cores, then the rest spread over TEST_WORKERS processes (pytest-xdist; a file's tests
# stay on one worker, so its module fixtures are built once; each worker's torch gets its
# share of the cores, and idle OpenMP threads sleep instead of spinning on a shared one).
# Exit status 5 is "this pass selected no test" (ARGS named a few).
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
test: $(STAMP)
	$(BIN)/python -m pytest -p no:xdist -m timing $(ARGS) || [ $$? -eq 5 ]
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
	  -m "not timing" $(ARGS) \
	  || [ $$? -eq 5 ]

viz: $(STAMP)
	$(BIN)/kedro viz run --no-browser $(ARGS)

viz-build: $(STAMP)
	$(BIN)/kedro viz build --include-previews $(ARGS)

# MLflow's background job runner (GenAI prompt optimisation, trace roll-ups: features this
# project does not use) is left off: four processes fewer. JOBS=true turns it on.
# UI_PORT: its port (checked first: a port another program holds is one sentence and
# exit status 1, where the server itself would log the clash and exit with status 0).
JOBS ?= false
UI_PORT ?= 5000
ui: $(STAMP)
	$(if $(findstring --port,$(ARGS)),$(error give the port with `make ui UI_PORT=<port>`, not ARGS="--port …"))
	@$(BIN)/python -m model_lifecycle.ports 127.0.0.1 "$(UI_PORT)" "make ui" UI_PORT
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$(JOBS) $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT) $(ARGS)

# An IPython shell with the project loaded (catalog, context, session, pipelines), with
# the project's environment first on PATH (`kedro ipython` starts whichever ipython is).
ipython: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/kedro ipython $(ARGS)

# The registered model behind HTTP (POST /invocations). MLFLOW_TRACKING_URI must be
# absolute for models:/ URIs; the scoring server (uvicorn) is found on PATH.
# WORKERS uvicorn processes (default: one per core), each holding its own copy of the
# model: one process answers one request at a time and leaves the other cores idle
# (docs/serving.md has the measurement). Limits the model
# enforces (set when it was registered): at most register.max_rows images per request
# (default 1,000; more: HTTP 400), register.max_request_pixels pixels in all (default
# 1,000,000,000, read from the headers; more: HTTP 400) and ingest.max_pixels pixels per
# image (default 89,478,485; a larger image gets a per-row `error`, the others are answered).
# MODEL_VERSION=<n> serves that version by its number instead of the one holding ALIAS;
# SERVE_PORT: the port (5001). The version is looked up and the port checked first
# (serving/check.py, ports.py): before `make run`, with a misspelt MODEL or a port another
# program holds, one sentence and exit status 1 instead of a traceback or a logged clash.
MODEL   ?= model-lifecycle
ALIAS   ?= champion
MODEL_VERSION ?=
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
SERVE_PORT ?= 5001
# SERVE_URI: the registry served from (default the project's own store; the team server
# of `make server`: SERVE_URI=http://127.0.0.1:5005).
SERVE_URI ?= sqlite:///$(CURDIR)/mlflow.db
serve: $(STAMP)
	$(if $(findstring --port,$(ARGS)),$(error give the port with `make serve SERVE_PORT=<port>`, not ARGS="--port …"))
	@MLFLOW_TRACKING_URI="$(SERVE_URI)" \
	  $(BIN)/python -m model_lifecycle.serving.check "$(MODEL)" "$(ALIAS)" "$(MODEL_VERSION)"
	@$(BIN)/python -m model_lifecycle.ports 127.0.0.1 "$(SERVE_PORT)" "make serve" SERVE_PORT
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$(SERVE_URI)" \
	$(BIN)/mlflow models serve \
	  -m "models:/$(MODEL)$(if $(MODEL_VERSION),/$(MODEL_VERSION),@$(ALIAS))" --env-manager local \
	  --host 127.0.0.1 --port $(SERVE_PORT) --workers $(WORKERS) $(ARGS)

# The team's MLflow tracking server on http://127.0.0.1:5005 (docs/tracking-server.md):
# PostgreSQL and the proxied artifacts in data/server/, bound to 127.0.0.1; runs log to it
# with `kedro run --env=server`. ARGS: --port, --pg-port, --folder, --host, --workers.
server: $(STAMP)
	$(BIN)/python -m model_lifecycle.tracking_server start $(ARGS)

server-stop: $(STAMP)
	$(BIN)/python -m model_lifecycle.tracking_server stop $(ARGS)

# docs/images/{kedro-viz,mlflow-runs,mlflow-registered-model}.png, taken by the browser
# tests on a tiny lifecycle (needs Chromium: apt-get install chromium)
screenshots: $(STAMP)
	SCREENSHOTS=1 $(BIN)/python -m pytest tests/ui $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all $(ARGS)

# on a machine with a CUDA GPU: the CIFAR recipe on the GPU (results/cifar10_gpu.json)
bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks.cifar10_gpu $(ARGS)
	$(BIN)/python -m benchmarks.run_all --report-only

# docs/parameters.md from the parameter models (a test fails when it is stale)
docs: $(STAMP)
	$(BIN)/python -m model_lifecycle.paramdocs

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Every version under data/ (their folders too), the MLflow store and its artifacts
# (mlruns/); keeps data/server (the tracking server's database and artifacts).
clean-data:
	find data -path data/server -prune -o -type f ! -name .gitkeep -exec rm -f {} +
	find data -mindepth 2 -type d -empty ! -path "data/server/*" -delete
	rm -rf mlflow.db mlruns
