import pytest

from model_lifecycle.augment.config import AugmentParams
from model_lifecycle.data.config import IngestParams
from model_lifecycle.errors import LifecycleError
from model_lifecycle.params import parse_params
from model_lifecycle.training.config import FinetuneParams


def test_unknown_key_is_one_sentence_naming_the_full_key_and_the_allowed_ones():
    with pytest.raises(LifecycleError) as error:
        parse_params(IngestParams, {"splits": {"vall": 0.1}}, "ingest")
    message = str(error.value)
    assert "'ingest.splits.vall'" in message
    assert "parameters_ingest.yml" in message
    assert "test, val" in message
    assert "\n" not in message


def test_invalid_value_names_key_value_and_rule():
    rule = r"'ingest.labeled_fraction' = 1.5 .*less than or equal to 1"
    with pytest.raises(LifecycleError, match=rule):
        parse_params(IngestParams, {"labeled_fraction": 1.5}, "ingest")


@pytest.mark.parametrize("key", ["val", "test"])
def test_split_fractions_of_one_or_more_are_refused(key):
    with pytest.raises(LifecycleError, match=rf"'ingest.splits.{key}' = 1.5 .*less than 1"):
        parse_params(IngestParams, {"splits": {key: 1.5}}, "ingest")


@pytest.mark.parametrize("size", [[20], [12, 14, 3]])
def test_an_image_size_of_other_than_one_or_two_numbers_says_what_it_takes(size):
    with pytest.raises(LifecycleError, match=r"'ingest.image_size' = \[.*\] .*give one "
                                             r"number \(a square\) or two, \[height, width\]"):
        parse_params(IngestParams, {"image_size": size}, "ingest")
    assert parse_params(IngestParams, {"image_size": [12, 14]}, "ingest").size_hw == (12, 14)


def test_source_that_reads_files_needs_a_path():
    with pytest.raises(LifecycleError, match="set ingest.path"):
        parse_params(IngestParams, {"source": "image_folder"}, "ingest")
    # a run that reads it (the preflight says so) is refused before it starts when the
    # path does not exist, by the key it is given as (the transfer pipeline's source)
    with pytest.raises(LifecycleError, match=r"source\.ingest\.path /no/such/folder does "
                       r"not exist: point it at the image folder"):
        parse_params(IngestParams, {"source": "image_folder", "path": "/no/such/folder"},
                     "source.ingest", context={"reads_files": True})
    parse_params(IngestParams, {"source": "image_folder", "path": "/no/such/folder"},
                 "ingest")  # a node or a test that reads nothing: not checked
    # the transfer pipeline's source data set: the key it is given as
    with pytest.raises(LifecycleError, match=r"set source\.ingest\.path to its location"):
        parse_params(IngestParams, {"source": "image_folder"}, "source.ingest")


def test_nested_unknown_key_in_augment_policy():
    with pytest.raises(LifecycleError, match=r"'augment.pretrain.color_jiter'.*color_jitter"):
        parse_params(AugmentParams, {"pretrain": {"color_jiter": {}}}, "augment")


def test_defaults_are_valid():
    assert parse_params(IngestParams, {}, "ingest").source == "digits"
    assert parse_params(AugmentParams, None, "augment").seed == 0


def test_whitening_a_pretrained_stem_is_refused():
    with pytest.raises(LifecycleError, match="whiten_stem.*init: scratch"):
        parse_params(FinetuneParams, {"init": "pretrained", "whiten_stem": True}, "finetune")
    assert parse_params(FinetuneParams, {"init": "scratch", "whiten_stem": True},
                        "finetune").whiten_stem


def test_a_run_that_reads_no_files_needs_no_path():
    # e.g. `kedro run --env=cifar10 --pipelines=register`: the path was the ingest run's
    config = parse_params(IngestParams, {"source": "auto"}, "ingest",
                          context={"reads_files": False})
    assert config.path is None
    with pytest.raises(LifecycleError, match="set ingest.path"):
        parse_params(IngestParams, {"source": "auto"}, "ingest",
                     context={"reads_files": True})


def test_the_sentence_names_the_file_that_sets_the_key(tmp_path, monkeypatch):
    """A key an environment sets is named in that environment's file, not in base's."""
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "gpu").mkdir()
    (tmp_path / "conf" / "base" / "parameters_finetune.yml").write_text(
        "finetune:\n  epochs: 3\n  optimizer: {lr: 0.1}\n")
    (tmp_path / "conf" / "local" / "parameters.yml").write_text(
        "finetune:\n  optimizer: {lrr: 0.1}\n")
    (tmp_path / "conf" / "gpu" / "parameters.yml").write_text("finetune:\n  epochs: ten\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LifecycleError, match=r"^Unknown parameter 'finetune.optimizer.lrr' in "
                                             r"conf/local/parameters.yml: "):
        parse_params(FinetuneParams, {"optimizer": {"lrr": 0.1}}, "finetune")
    # pydantic's union branch (`epochs.int`) is no key; the run's environment is searched
    with pytest.raises(LifecycleError, match=r"^Invalid parameter 'finetune.epochs' = 'ten' in "
                                             r"conf/gpu/parameters.yml: "):
        parse_params(FinetuneParams, {"epochs": "ten"}, "finetune", env="gpu")
    with pytest.raises(LifecycleError, match=r"^Parameter group .finetune. in conf/local/"
                                             r"parameters.yml is 3, not keys and "
                                             r"values: write it as a mapping"):
        parse_params(FinetuneParams, 3, "finetune")


def test_a_path_from_the_home_folder_is_expanded_as_the_shell_would(tmp_path, monkeypatch):
    """`--params "ingest.path=~/data"` reaches the run unexpanded (quoted; the same in a
    YAML file): the check before the run and the reader must see one folder."""
    from model_lifecycle.serving.config import InferenceParams  # noqa: PLC0415
    from model_lifecycle.serving.predict import files_to_predict  # noqa: PLC0415
    from tests.conftest import make_image  # noqa: PLC0415

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "shots").mkdir()
    make_image("RGB", (4, 4), 0).save(tmp_path / "shots" / "a.png")
    ingest = parse_params(IngestParams, {"source": "image_folder", "path": "~/shots"},
                          "ingest", context={"reads_files": True})
    assert ingest.path == str(tmp_path / "shots")
    inference = parse_params(InferenceParams, {"input_dir": "~/shots"}, "inference")
    assert files_to_predict(inference.input_dir)[0] == [tmp_path / "shots" / "a.png"]


def test_resume_without_a_checkpoint_is_refused():
    """`conf/cifar10` writes no checkpoint: resume: true there would train from the start."""
    from model_lifecycle.training.config import PretrainParams  # noqa: PLC0415

    for model, group in ((FinetuneParams, "finetune"), (PretrainParams, "pretrain")):
        with pytest.raises(LifecycleError, match=rf"{group}\.resume is true but "
                           rf"{group}\.checkpoint is null, so there is nothing to resume "
                           rf"from: set {group}\.checkpoint to a file"):
            parse_params(model, {"resume": True, "checkpoint": None}, group)


def test_a_model_name_mlflow_cannot_register_is_refused_before_the_run():
    from model_lifecycle.serving.config import RegisterParams  # noqa: PLC0415

    with pytest.raises(LifecycleError, match=r"register.model_name' = 'digits/v2'.*cannot "
                       r"hold / \(it is part of the models:/<name>@<alias> URI\): use e\.g\. "
                       r"digits-v2"):
        parse_params(RegisterParams, {"model_name": "digits/v2"}, "register")
    assert parse_params(RegisterParams, {"model_name": "digits v2"}, "register")


def test_the_list_hint_is_given_only_where_a_list_would_help():
    """`ingest.image_size=abc` (a number or a list of numbers): `[abc]` would not help."""
    with pytest.raises(LifecycleError) as raised:
        parse_params(IngestParams, {"image_size": "abc"}, "ingest",
                     context={"reads_files": False})
    assert "brackets" not in str(raised.value)
    assert "'ingest.image_size' = 'abc'" in str(raised.value)
