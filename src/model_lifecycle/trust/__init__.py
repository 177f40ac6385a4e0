"""Trust checks of a trained model: explanations, robustness, drift."""
