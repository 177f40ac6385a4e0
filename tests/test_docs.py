"""docs/parameters.md is generated from the parameter models and must not go stale."""

import pytest

from model_lifecycle.paramdocs import TARGET, _rows, render
from model_lifecycle.params import StrictModel


def test_docs_parameters_md_is_up_to_date():
    assert TARGET.read_text() == render(), (
        "docs/parameters.md is stale: run `make docs` and commit it")


def test_every_parameter_is_documented():
    text = render()
    for key in ("finetune.budget_seconds", "compress.prune.recovery.final_epochs",
                "compress.distill.whiten_stem", "evaluate.latency.repeats", "ingest.source"):
        assert f"| `{key}` |" in text, key


def test_a_field_without_a_docstring_is_refused():
    class Undocumented(StrictModel):
        size: int = 3
        """Documented."""
        other: int = 4

    with pytest.raises(ValueError, match="Undocumented.other has no docstring"):
        _rows(Undocumented, "group", [{}])
