"""``ingest`` and ``augment`` run end to end through Kedro and kedro-mlflow, on tiny
real files, with data and the MLflow store in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import mlflow
import numpy as np
import pytest
import yaml
from kedro.framework.startup import bootstrap_project
from kedro.io import DatasetError, DatasetNotFoundError
from PIL import Image

from model_lifecycle.cli import split_params
from model_lifecycle.data.splits import SPLIT_NAMES
from model_lifecycle.errors import LifecycleError
from model_lifecycle.io import ImageSetDataset, JsonDataset, NpzDataset
from tests.conftest import make_image, scratch_project


def _versions(work: Path, relative: str) -> list[Path]:
    return sorted((work / relative).glob("*/" + Path(relative).name))


def _runs(work: Path):
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["model-lifecycle"], order_by=["start_time ASC"])


def _image_folder_params(root: Path, **extra) -> dict:
    return {"ingest": {"source": "image_folder", "path": str(root), "image_size": 8,
                       "channels": 3, "labeled_fraction": 0.5,
                       "splits": {"val": 0.2, "test": 0.2}, "on_bad_image": "skip", **extra}}


@pytest.fixture
def tree_with_bad_files(tmp_path: Path) -> Path:
    """4 classes × 10 images, half PNG half JPEG, plus one corrupt JPEG."""
    root = tmp_path / "photos"
    for c, name in enumerate(("ant", "bee", "cow", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(10):
            image = make_image("RGB", (12, 10), seed=10 * c + i)
            image.save(root / name / (f"{i}.png" if i % 2 else f"{i}.jpg"))
    (root / "cow" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_image_folder_end_to_end(project, tree_with_bad_files):
    project(["ingest", "augment"], _image_folder_params(tree_with_bad_files))
    work = project.work

    [images_file] = _versions(work, "data/03_primary/images.npz")
    [splits_file] = _versions(work, "data/05_model_input/splits.npz")
    [policy_file] = _versions(work, "data/05_model_input/augmentation_policy.json")
    assert images_file.parent.name == splits_file.parent.name  # one run, one version

    images = ImageSetDataset(filepath=str(images_file)).load()
    assert images.images.shape == (40, 3, 8, 8)
    assert images.class_names == ("ant", "bee", "cow", "dog")
    assert len(images.skipped) == 1 and "broken.jpg" in images.skipped[0]

    splits = NpzDataset(filepath=str(splits_file)).load()
    members = np.concatenate([splits[name] for name in SPLIT_NAMES])
    assert sorted(members.tolist()) == list(range(40))  # disjoint and complete
    for name in SPLIT_NAMES:  # stratified: every class in every split, counts within 1
        counts = np.bincount(images.labels[splits[name]], minlength=4)
        assert counts.min() > 0 and counts.max() - counts.min() <= 1, (name, counts)

    report = json.loads((work / "data/08_reporting/dataset_report.json").read_text())
    assert report["skipped_count"] == 1
    assert report["fingerprint"] == images.fingerprint()
    assert sum(report["split_sizes"].values()) == 40
    assert (work / "data/08_reporting/class_distribution.png").stat().st_size > 1000

    policy = JsonDataset(filepath=str(policy_file)).load()
    assert policy["format"] == 1 and policy["supervised"]["random_crop"]["padding"] == 2
    preview = Image.open(work / "data/08_reporting/augmentation_preview.png")
    assert preview.size[0] > 300

    runs = _runs(work)
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.ingest.source"] == "image_folder"
    assert run["params.ingest.splits.val"] == "0.2"
    assert run["params.augment.pretrain.color_jitter.p"] == "0.8"
    assert run["metrics.ingest.n_images"] == 40
    assert run["metrics.ingest.skipped_images"] == 1
    client = mlflow.MlflowClient()
    artifacts = {a.path for folder in ("ingest", "augment")
                 for a in client.list_artifacts(run["run_id"], folder)}
    assert artifacts == {"ingest/dataset_report.json", "ingest/class_distribution.png",
                         "augment/augmentation_policy.json",
                         "augment/augmentation_preview.png"}


def test_cifar_batches_end_to_end_use_the_source_test_split(project, cifar_dir):
    project(["ingest"], {"ingest": {"source": "cifar10", "path": str(cifar_dir),
                                    "image_size": 32, "labeled_fraction": 1.0,
                                    "splits": {"val": 0.125}}})
    [splits_file] = _versions(project.work, "data/05_model_input/splits.npz")
    splits = NpzDataset(filepath=str(splits_file)).load()
    assert splits["test"].tolist() == list(range(80, 100))  # test_batch, as shipped
    assert len(splits["val"]) == 10 and len(splits["train_unlabeled"]) == 0


def test_parameters_reach_mlflow_once_each_one_request_per_node(project, monkeypatch):
    # kedro-mlflow alone sends one request per parameter, again for every node that reads
    # the same group (763 for the tiny lifecycle); settings.py's hook batches them
    batches, singles = [], []
    log_batch = mlflow.MlflowClient.log_batch

    def counted_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if params:
            batches.append([param.key for param in params])
        return log_batch(self, run_id, metrics, params, tags, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", counted_batch)
    monkeypatch.setattr(mlflow.MlflowClient, "log_param",
                        lambda self, *args, **kwargs: singles.append(args))
    project(["ingest", "augment"], {"ingest": {"image_size": 8}})
    run = _runs(project.work).iloc[-1]
    logged = {key.removeprefix("params."): value for key, value in run.items()
              if key.startswith("params.") and isinstance(value, str)}
    assert logged["ingest.image_size"] == "8"
    assert {key.split(".")[0] for key in logged} == {"ingest", "fewshot", "augment"}
    assert singles == []
    sent = [key for batch in batches for key in batch]
    assert sorted(sent) == sorted(logged)  # each once, though two nodes read each group
    assert len(batches) < 4  # of the four nodes, only those reading a group first send


def test_a_failed_run_is_marked_failed_and_keeps_earlier_versions(project,
                                                                  tree_with_bad_files):
    params = _image_folder_params(tree_with_bad_files)
    project(["ingest"], params)
    [first] = _versions(project.work, "data/03_primary/images.npz")
    before = first.read_bytes()

    params["ingest"]["on_bad_image"] = "error"
    with pytest.raises(LifecycleError, match=r"cow/broken.jpg"):
        project(["ingest"], params)

    assert _versions(project.work, "data/03_primary/images.npz") == [first]
    assert first.read_bytes() == before
    assert _runs(project.work)["status"].tolist() == ["FINISHED", "FAILED"]


def test_an_impossible_split_saves_nothing_and_later_stages_still_run(
        project, tree_with_bad_files):
    project(["ingest"], _image_folder_params(tree_with_bad_files))
    [images] = _versions(project.work, "data/03_primary/images.npz")
    [splits] = _versions(project.work, "data/05_model_input/splits.npz")
    bad = _image_folder_params(tree_with_bad_files, image_size=6)
    bad["ingest"]["splits"] = {"val": 0.01, "test": 0.2}
    with pytest.raises(LifecycleError, match=r"Cannot stratify ingest.splits.val"):
        project(["ingest"], bad)
    # no new images without their splits: the latest pair still belongs together
    assert _versions(project.work, "data/03_primary/images.npz") == [images]
    assert _versions(project.work, "data/05_model_input/splits.npz") == [splits]
    project(["augment"])
    assert _runs(project.work)["status"].tolist() == ["FINISHED", "FAILED", "FINISHED"]


def test_a_misspelt_parameter_group_is_refused_naming_the_groups(project):
    with pytest.raises(LifecycleError) as error:
        project(["ingest"], {"ingst": {"source": "image_folder"}})
    assert str(error.value).startswith(
        "Unknown parameter group 'ingst' given with kedro run --params: the groups are "
        "adapt, augment, compress, evaluate, explain, fewshot, finetune, inference, ingest, "
        "pretrain, register, runtime, source.")
    assert not _versions(project.work, "data/03_primary/images.npz")


def test_command_line_errors_say_so_and_a_path_digits_ignores_is_refused(project, tmp_path):
    with pytest.raises(LifecycleError, match=r"^Invalid parameter 'ingest.labeled_fraction' "
                                             r"= 2 in the command line \(kedro run --params\)"):
        project(["ingest"], {"ingest": {"labeled_fraction": 2}})
    with pytest.raises(LifecycleError, match=r"ingest.path is set \(.*\) but source 'digits' "
                                             r"reads no files"):
        project(["ingest"], {"ingest": {"path": str(tmp_path)}})


def test_an_oversized_image_is_named_and_skipped_by_ingest(project, tree_with_bad_files):
    from tests.conftest import bomb_png  # noqa: PLC0415

    (tree_with_bad_files / "dog" / "huge.png").write_bytes(bomb_png())
    params = _image_folder_params(tree_with_bad_files)  # on_bad_image: skip
    project(["ingest"], params)
    report = json.loads((project.work / "data/08_reporting/dataset_report.json").read_text())
    assert report["skipped_count"] == 2
    assert any("huge.png" in entry and "pixels" in entry for entry in report["skipped"])
    params["ingest"]["on_bad_image"] = "error"
    (tree_with_bad_files / "cow" / "broken.jpg").unlink()
    with pytest.raises(LifecycleError, match=r"dog/huge.png.*pixels.*ingest.max_pixels"):
        project(["ingest"], params)


def test_a_run_killed_from_outside_is_marked_killed_by_the_next(project):
    project(["ingest"])
    client = mlflow.MlflowClient()
    [first] = _runs(project.work)["run_id"].tolist()
    tags = client.get_run(first).data.tags
    assert tags["model_lifecycle.pid"] == str(os.getpid())
    # a run whose process died without closing it (SIGKILL): RUNNING, its pid gone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    experiment = client.get_experiment_by_name("model-lifecycle")
    stale = client.create_run(experiment.experiment_id, tags={
        "model_lifecycle.pid": dead, "model_lifecycle.host": tags["model_lifecycle.host"]})
    alive = client.create_run(experiment.experiment_id, tags={
        "model_lifecycle.pid": str(os.getpid()),
        "model_lifecycle.host": tags["model_lifecycle.host"]})
    project(["ingest"])
    assert client.get_run(stale.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"  # its process lives
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_a_failed_run_is_closed_once(project, tree_with_bad_files, caplog):
    params = _image_folder_params(tree_with_bad_files, on_bad_image="error")
    with caplog.at_level("INFO"), pytest.raises(LifecycleError):
        project(["ingest", "augment"], params)
    assert caplog.text.count("was closed because of an error") == 1


def test_unknown_parameter_stops_with_one_sentence(project):
    with pytest.raises(LifecycleError, match=r"Unknown parameter 'augment.pretrain.flip'"):
        project(["augment"], {"augment": {"pretrain": {"flip": {"p": 0.5}}}})


def test_problems_in_several_groups_are_named_together(project, tmp_path):
    """A missing folder and a misspelt key of another group: both in one refusal, not the
    second only after the first is fixed."""
    with pytest.raises(LifecycleError) as refused:
        project(["ingest", "augment", "pretrain"],
                {"ingest": {"source": "image_folder", "path": str(tmp_path / "nowhere")},
                 "pretrain": {"epoch": 3}})
    message = str(refused.value)
    assert f"ingest.path {tmp_path / 'nowhere'} does not exist" in message
    assert "Unknown parameter 'pretrain.epoch'" in message


def test_pipeline_alone_without_its_inputs_names_the_pipeline_to_run(project):
    with pytest.raises(LifecycleError,
                       match=r"^Inputs 'images', 'splits' have never been produced: run "
                             r"`kedro run --pipelines=ingest` first, which produces them all"):
        project(["augment"])
    assert not (project.work / "mlflow.db").exists() or _runs(project.work).empty


def test_a_cold_start_names_every_missing_input_and_one_command(project):
    # a fresh clone: fine-tuning needs four inputs from three pipelines
    with pytest.raises(LifecycleError) as error:
        project(["finetune"])
    assert str(error.value) == (
        "Inputs 'augmentation_policy', 'images', 'pretrained_encoder', 'splits' have never "
        "been produced: run `kedro run --pipelines=ingest,augment,pretrain` first, which "
        "produces them all, or set finetune.init: scratch.")
    # a later stage: the command also makes what the producers themselves need
    # (finetune's encoder from pretrain), so that it runs as given
    with pytest.raises(LifecycleError, match=r"run `kedro run --pipelines=ingest,augment,"
                                             r"pretrain,finetune` first, which produces"):
        project(["compress"])
    with pytest.raises(LifecycleError, match=r"run `kedro run --pipelines=ingest,augment,"
                                             r"finetune` first"):  # no encoder to pretrain
        project(["compress"], {"finetune": {"init": "scratch"}})


def test_cli_prints_one_sentence_not_a_traceback(tmp_path):
    work = scratch_project(tmp_path / "cli")
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines=ingest", "--params",
         f"ingest.source=image_folder,ingest.path={tmp_path / 'missing'}"],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stderr + result.stdout
    assert result.returncode == 1, output[-2000:]
    assert f"ingest.path {tmp_path / 'missing'} does not exist: point it at" in output
    assert "Traceback" not in output
    # nor MLflow's warning about a class of kedro-mlflow's this project never uses
    assert "type hints" not in output
    assert _runs(work).empty  # refused before the run started


def test_cli_params_take_lists_as_the_docs_write_them(tmp_path):
    """`--params "fewshot.novel_classes=[8,9],ingest.image_size=[6,8]"`: Kedro's own
    parser splits at every comma; the project's `kedro run` keeps brackets whole."""
    work = scratch_project(tmp_path / "cli")
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines=ingest", "--params",
         "ingest.image_size=[6,8], fewshot.novel_classes=[8,9],fewshot.way=2"],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, (result.stderr + result.stdout)[-2000:]
    # nor Kedro's suggestion of --async, which this project refuses
    assert "--async" not in result.stderr + result.stdout
    [images] = _versions(work, "data/03_primary/images.npz")
    [novel] = _versions(work, "data/03_primary/novel_images.npz")
    assert ImageSetDataset(filepath=str(images)).load().image_shape == (1, 6, 8)
    assert ImageSetDataset(filepath=str(novel)).load().class_names == ("8", "9")
    # a bad item is still one sentence (click prints it as `Error: Invalid value ...`)
    with pytest.raises(click.BadParameter, match=r"^'oops' is not key=value \(or key:value\): "):
        split_params(None, None, "ingest.image_size=[6,8],oops")
    assert split_params(None, None, "a=[1,2],b.c='x,y',d={e: [3]}") == {
        "a": [1, 2], "b": {"c": "x,y"}, "d": {"e": [3]}}
    # key:value, as Kedro's help also allows
    assert split_params(None, None, "augment.seed:1,ingest.path=/d:x") == {
        "augment": {"seed": 1}, "ingest": {"path": "/d:x"}}
    # an apostrophe inside a value is a character, not a quote
    assert split_params(None, None, "inference.input_dir=/data/Bob's photos,x=1") == {
        "inference": {"input_dir": "/data/Bob's photos"}, "x": 1}


@pytest.mark.parametrize(("args", "sentence"), [
    (["--env=nosuch"], r"^Error: Unknown environment 'nosuch': the environments are base, "),
    (["--pipelines=ingest,finetun"], r"^Error: Unknown pipeline 'finetun': the pipelines are "
                                     r"adapt, augment, "),
    (["--runner=ParallelRunner"], r"^Error: ParallelRunner cannot run this project: .* run "
                                  r"without --runner \(SequentialRunner\) or with "
                                  r"--runner=ThreadRunner\.$"),
    (["--runner=Bogus"], r"^Error: Unknown runner 'Bogus': use SequentialRunner \(the "
                         r"default\) or ThreadRunner, or give"),
    (["--async"], r"^Error: --async cannot be used with this project: .* run without "
                  r"--async\.$"),
])
def test_cli_typos_in_env_and_pipeline_names_are_one_sentence(args, sentence):
    from click.testing import CliRunner  # noqa: PLC0415

    from model_lifecycle.cli import cli  # noqa: PLC0415

    result = CliRunner().invoke(cli, ["run", *args])
    assert result.exit_code == 1
    assert re.search(sentence, result.output), result.output
    assert "Traceback" not in result.output


def test_a_run_from_a_sub_folder_tracks_into_the_projects_store(tmp_path, monkeypatch):
    """base's `sqlite:///mlflow.db` is the project's store wherever `kedro run` starts
    (`make ui` and `make serve` read the one in the project folder)."""
    from model_lifecycle.hooks import in_project  # noqa: PLC0415
    from tests.conftest import project_runner  # noqa: PLC0415

    work = scratch_project(tmp_path / "work", store=False)
    (work / "conf" / "local" / "mlflow.yml").unlink()  # base's relative store, as shipped
    monkeypatch.chdir(work / "src")
    project_runner(work)(["ingest"], {"ingest": {"image_size": 8}})
    assert not [p.name for p in (work / "src").iterdir()]  # no store, no artifacts
    run = _runs(work).iloc[-1]
    assert run["status"] == "FINISHED"
    assert run["artifact_uri"].startswith((work / "mlruns").as_uri())
    # absolute stores and set artifact locations are the user's: left as they are
    conf = {"server": {"mlflow_tracking_uri": "sqlite:////srv/m.db",
                       "mlflow_registry_uri": "http://127.0.0.1:5005"},
            "tracking": {"experiment": {"create_experiment_kwargs": {
                "artifact_location": "s3://bucket/x"}}}}
    assert in_project(conf, work) == conf
    # no store named (the mlflow.yml `kedro mlflow init` writes): the project's own
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for empty in ({"server": {"mlflow_tracking_uri": None}}, {}):  # an empty mlflow.yml too
        made = in_project(empty, work)
        assert made["server"] == {"mlflow_tracking_uri": f"sqlite:///{work / 'mlflow.db'}"}
        assert made["tracking"]["experiment"]["create_experiment_kwargs"] == {
            "artifact_location": "mlruns"}
    # a shared absolute store keeps MLflow's own artifact location
    shared = in_project({"server": {"mlflow_tracking_uri": "sqlite:////srv/m.db"}}, work)
    assert shared["tracking"]["experiment"]["create_experiment_kwargs"] == {}


@pytest.mark.parametrize("args", [["registry", "describe", "nosuch"],
                                  ["catalog", "describe-datasets", "-p", "nosuch"]])
def test_the_commands_the_sentences_recommend_refuse_typos_in_one_sentence(args):
    from click.testing import CliRunner  # noqa: PLC0415

    from model_lifecycle.cli import cli  # noqa: PLC0415

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: Unknown pipeline 'nosuch': the pipelines are ")
    assert isinstance(result.exception, SystemExit)  # click's exit, not an ImportError
    if args[0] == "registry":  # a pipeline that exists: the command as Kedro's own (the
        # catalog's would open the project's MLflow store, in the repository)
        result = CliRunner().invoke(cli, [*args[:-1], "ingest"], obj=bootstrap_project(
            Path(__file__).resolve().parents[2]))
        assert result.exit_code == 0, result.output
        assert "- ingest_images (ingest_images)" in result.output


def test_load_versions_without_a_version_is_one_sentence():
    """Kedro's own parser refuses it with an error whose message never reaches the
    terminal (`NoneType: None`)."""
    from click.testing import CliRunner  # noqa: PLC0415

    from model_lifecycle.cli import cli  # noqa: PLC0415

    result = CliRunner().invoke(cli, ["run", "--load-versions=images"])
    assert result.exit_code == 2  # click's usage error
    assert re.search(r"Error: Invalid value for '--load-versions' / '-lv': Expected the form "
                     r"of 'load_versions' to be 'dataset_name:YYYY-MM-DDThh.mm.ss.sssZ',found "
                     r"images instead \(a dataset's versions are the folder names under "
                     r"data/<layer>/<dataset>/\)$", result.output.strip()), result.output
    assert "NoneType" not in result.output
    # a good value still reaches the run as Kedro's parser gives it
    result = CliRunner().invoke(cli, ["run", "--pipelines=nosuch",
                                      "--load-versions=images:2026-12-04T10.15.00.000Z"])
    assert "Unknown pipeline 'nosuch'" in result.output


@pytest.mark.parametrize(("raised", "sentence"), [
    # Kedro's own errors, as its pipeline filter, catalog and config loader word them
    (ValueError("Pipeline contains no nodes after applying all provided filters. Please "
                "ensure that at least one pipeline with nodes has been defined."),
     r"^No node is left after the filters given \(--tags, .*--nodes picks some\.$"),
    (DatasetNotFoundError("'load_versions' keys [nosuch] are not found in the catalog."),
     r"^'load_versions' keys \[nosuch\] are not found in the catalog: `kedro catalog "
     r"describe-datasets` lists the datasets\.$"),
    (ValueError("Duplicate keys found in conf/local/a.yml and conf/local/b.yml: augment"),
     r"^Duplicate keys found in conf/local/a.yml and conf/local/b.yml: augment: keep the "
     r"key in one of the files\.$"),
])
def test_kedros_own_refusals_are_one_sentence(raised, sentence):
    from model_lifecycle.cli import _one_sentence  # noqa: PLC0415

    def run(**kwargs):
        raise raised

    with pytest.raises(click.ClickException) as caught:
        _one_sentence(run)()
    assert re.search(sentence, caught.value.message), caught.value.message


def test_an_interrupted_run_is_marked_killed_not_finished(tmp_path):
    """Ctrl-C: MLflow's exit handler would end the open run as FINISHED."""
    from model_lifecycle.cli import _one_sentence  # noqa: PLC0415

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("interrupted")  # not an experiment id another test left set

    def run_interrupted(**_kwargs):
        mlflow.start_run()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _one_sentence(run_interrupted)()
    assert mlflow.active_run() is None
    assert mlflow.search_runs(search_all_experiments=True)["status"].tolist() == ["KILLED"]


def test_cli_bad_yaml_and_node_names_are_one_sentence():
    """What Kedro raises for a YAML syntax error in conf/ and for `--from-nodes` naming no
    node (both checked by hand with `kedro run`) becomes one sentence."""
    from model_lifecycle.cli import _one_sentence  # noqa: PLC0415

    def raising(exc: Exception):
        def callback(**_kwargs):
            raise exc
        return _one_sentence(callback)

    with pytest.raises(click.ClickException) as error:
        raising(ValueError("Pipeline does not contain nodes named ['nosuch']."))()
    assert error.value.message == ("Pipeline does not contain nodes named ['nosuch']: `kedro "
                                   "registry describe <pipeline>` lists its nodes.")
    parser_error = yaml.parser.ParserError(
        "Invalid YAML or JSON file conf/local/parameters.yml, unable to read line 2, "
        "position 0.")
    with pytest.raises(click.ClickException) as error:
        raising(parser_error)()
    assert error.value.message == ("Invalid YAML or JSON file conf/local/parameters.yml, "
                                   "unable to read line 2, position 0: fix the YAML of that "
                                   "file.")
    # a YAML error Kedro does not wrap: PyYAML's own, with its line
    with pytest.raises(click.ClickException) as error:
        raising(_yaml_error("finetune: &x\n  epochs: *y\n"))()
    assert error.value.message == ("found undefined alias 'y' at line 2, column 11 of a YAML file "
                                   "under conf/: fix it.")
    # a misspelt dataset type in the catalog (Kedro's words, checked by hand)
    with pytest.raises(click.ClickException) as error:
        raising(DatasetError(
            "An exception occurred when parsing config for dataset 'images':\nDataset "
            "'ImageSetDatasett' not found in 'model_lifecycle.io'. Make\nsure the dataset "
            "name is correct.\nHint: ... pip install kedro-datasets ..."))()
    assert error.value.message == (
        "The catalog entry 'images' cannot be built (Dataset 'ImageSetDatasett' not found in "
        "'model_lifecycle.io'): fix it in conf/<env>/catalog.yml (this project's own dataset "
        "types are in model_lifecycle.io).")
    with pytest.raises(DatasetError, match="Failed while saving"):
        raising(DatasetError("Failed while saving data to dataset X."))()
    with pytest.raises(ValueError, match="a real bug"):  # other errors keep their traceback
        raising(ValueError("a real bug"))()



def test_a_pinned_version_that_does_not_exist_is_named_with_those_that_do(project):
    project(["ingest"], {"ingest": {"image_size": 8}})
    [saved] = _versions(project.work, "data/03_primary/images.npz")
    # an empty version folder (what deleting the files leaves) is no version
    (saved.parent.parent / "2099-01-01T00.00.00.000Z").mkdir()
    with pytest.raises(LifecycleError, match=(
            r"^--load-versions asks for version 2099-01-01T00.00.00.000Z of 'images', which "
            r"does not exist: the versions under .*images.npz are "
            + re.escape(saved.parent.name) + r"\.$")):
        project(["augment"], {"ingest": {"image_size": 8}},
                load_versions={"images": "2099-01-01T00.00.00.000Z"})


def _yaml_error(text: str) -> yaml.YAMLError:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    raise AssertionError(f"{text!r} is valid YAML")


def test_a_terminated_run_is_marked_killed_like_an_interrupted_one(tmp_path):
    """`timeout`, `docker stop` or a batch scheduler send SIGTERM: the run must not stay
    RUNNING in MLflow."""
    import signal  # noqa: PLC0415

    from model_lifecycle.cli import _one_sentence  # noqa: PLC0415

    uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("terminated")

    def run_terminated(**_kwargs):
        mlflow.start_run()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives first

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            _one_sentence(run_terminated)()
        assert mlflow.active_run() is None
        assert mlflow.search_runs(search_all_experiments=True)["status"].tolist() == [
            "KILLED"]
        # `nohup kedro run &` ignores SIGHUP: a closed terminal must not stop it
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _one_sentence(lambda **_kwargs: None)()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        mlflow.set_tracking_uri(uri)


def _refused_by_the_file_system() -> None:
    try:
        raise PermissionError(1, "Operation not permitted", "/data/06_models/x.pt")
    except PermissionError as exc:
        raise DatasetError("Failed while saving data to dataset TorchModelDataset(…).\n"
                           "[Errno 1] Operation not permitted") from exc


def _refused_and_wrapped_twice() -> None:
    """As `kedro run` with data/ mounted read-only shows: the dataset's DatasetError, then
    the catalog's, naming the dataset."""
    try:
        try:
            raise OSError(30, "Read-only file system", "data/03_primary/images.npz")
        except OSError as exc:
            raise DatasetError("Failed while saving data to dataset "
                               "ImageSetDataset(…).") from exc
    except DatasetError as exc:
        raise DatasetError(f"images: {exc}") from exc


@pytest.mark.parametrize(("save", "sentence"), [
    (_refused_by_the_file_system,
     "Failed while saving data to dataset TorchModelDataset(…): Operation not permitted "
     "'/data/06_models/x.pt': check that the path exists, can be written by this user and "
     "has free space, then run again (versions saved before are untouched)."),
    (_refused_and_wrapped_twice,
     "images: Failed while saving data to dataset ImageSetDataset(…): Read-only file system "
     "'data/03_primary/images.npz': check that the path exists, can be written by this user "
     "and has free space, then run again (versions saved before are untouched)."),
])
def test_a_file_the_run_cannot_write_is_one_sentence(save, sentence):
    from model_lifecycle.cli import _one_sentence  # noqa: PLC0415

    with pytest.raises(click.ClickException) as caught:
        _one_sentence(lambda **_kwargs: save())()
    assert caught.value.message == sentence
