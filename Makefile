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
export MPLBACKEND := Agg

.PHONY: run test viz viz-build ui serve screenshots bench bench-gpu lint docs clean-data install

run: $(STAMP)
	$(BIN)/kedro run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

viz: $(STAMP)
	$(BIN)/kedro viz run --no-browser $(ARGS)

viz-build: $(STAMP)
	$(BIN)/kedro viz build --include-previews $(ARGS)

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 $(ARGS)

# The registered model behind HTTP (POST /invocations). MLFLOW_TRACKING_URI must be
# absolute for models:/ URIs; the scoring server (uvicorn) is found on PATH.
MODEL ?= model-lifecycle
ALIAS ?= champion
serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="sqlite:///$(CURDIR)/mlflow.db" \
	$(BIN)/mlflow models serve -m "models:/$(MODEL)@$(ALIAS)" --env-manager local \
	  --host 127.0.0.1 --port 5001 $(ARGS)

# docs/images/mlflow-*.png from a running `make ui` (needs Chromium: apt-get install chromium)
screenshots:
	scripts/screenshot_ui.sh http://127.0.0.1:5000 $(MODEL)

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

clean-data:
	find data -type f ! -name .gitkeep -delete
	rm -f mlflow.db
