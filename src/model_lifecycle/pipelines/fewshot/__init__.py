"""``fewshot``: N-way K-shot accuracy on the held-out classes of pretrained, supervised,
scratch and episodically meta-trained encoders (Prototypical Networks)."""

from model_lifecycle.pipelines.fewshot.pipeline import create_pipeline

__all__ = ["create_pipeline"]
