"""Metric histories as MLflow logs them: the final point is the kept model's."""

from __future__ import annotations

from model_lifecycle.training.setup import history_for_mlflow


def test_the_kept_epochs_validation_metrics_are_the_latest_values():
    """Adversarial fine-tuning kept epoch 0 after robustness collapsed at epoch 1: the
    latest val_pgd_accuracy and val_robust_score are epoch 0's, beside the final
    val_accuracy, not the collapsed epoch's."""
    history = {"train_loss": [[0, 1.0], [1, 0.5]],
               "val_accuracy": [[0, 0.9], [1, 0.3]],
               "val_pgd_accuracy": [[0, 0.6], [1, 0.0]],
               "val_robust_score": [[0, 1.5], [1, 0.3]]}
    logged = history_for_mlflow(history, best_epoch=0, val_accuracy=0.91)
    latest = {key: points[-1] for key, points in logged.items()}
    assert latest["val_pgd_accuracy"] == {"step": 2, "value": 0.6}
    assert latest["val_robust_score"] == {"step": 2, "value": 1.5}
    assert latest["val_accuracy"] == {"step": 2, "value": 0.91}  # the final score itself
    assert latest["train_loss"] == {"step": 1, "value": 0.5}  # training curves end as run
    assert latest["best_epoch"] == {"step": 2, "value": 0.0}


def test_without_a_kept_epoch_the_history_is_as_trained():
    history = {"val_accuracy": [[0, 0.9], [1, 0.3]], "val_loss": [[0, 1.0], [1, 2.0]]}
    logged = history_for_mlflow(history, test_accuracy=0.5)
    assert logged["val_loss"] == [{"step": 0, "value": 1.0}, {"step": 1, "value": 2.0}]
    assert logged["test_accuracy"] == [{"step": 2, "value": 0.5}]
