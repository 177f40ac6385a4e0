"""The pipeline's MLflow run is closed once, however often kedro-mlflow re-opened it."""

from __future__ import annotations

import mlflow

from model_lifecycle.hooks import CloseMlflowRunHook


def test_a_run_reopened_before_every_node_is_ended_once(tmp_path, monkeypatch):
    """kedro-mlflow pushes its run on MLflow's active-run stack before every node; each
    end_run against a tracking server prints "View run … at: <url>" (twenty lines for
    the default lifecycle). The hook ends it once, and leaves the caller's own run."""
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("run-stack")
    ended = []
    real_end = mlflow.end_run
    monkeypatch.setattr(mlflow, "end_run",
                        lambda *a, **k: ended.append(mlflow.active_run().info.run_id)
                        or real_end(*a, **k))
    with mlflow.start_run() as caller:
        hook = CloseMlflowRunHook()
        hook.before_pipeline_run()
        run = mlflow.start_run(nested=True)
        for _ in range(5):  # as kedro-mlflow's before_node_run does
            mlflow.start_run(run_id=run.info.run_id, nested=True)
        hook.after_pipeline_run()
        assert ended == [run.info.run_id]
        assert mlflow.active_run().info.run_id == caller.info.run_id
    assert mlflow.active_run() is None
