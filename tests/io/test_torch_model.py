import pytest
import torch
from kedro.io.core import DatasetError

from model_lifecycle.io import TorchModelDataset
from model_lifecycle.models import build_model
from tests.models.test_registry import SMALL


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_saved_models_load_back_to_identical_outputs(tmp_path, arch):
    torch.manual_seed(0)
    model = build_model(arch, 4, 3, input_size=(16, 16), **SMALL[arch])
    model(torch.rand(8, 3, 16, 16))  # move batch-norm statistics away from their init
    model.eval()
    dataset = TorchModelDataset(filepath=str(tmp_path / "model.pt"))
    dataset.save(model)
    loaded = dataset.load()
    x = torch.rand(5, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))
    assert loaded.spec == model.spec and not loaded.training


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    torch.save({"spec": {"arch": "small_cnn"}}, tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match="not a model saved by this project"):
        TorchModelDataset(filepath=str(tmp_path / "bad.pt")).load()
