"""CIFAR-100 and SVHN through the whole library and CLI: prepare-data, a tiny search on both spaces, the NB201
lookup and a retrain of the found DARTS cell, on small files written in each dataset's original format.

Also: a missing or unverified dataset stops with a message naming it, its path and the fix, before anything is
written; and CIFAR-10 keeps its paths, manifest keys and normalisation constants.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from fakes import write_fake_cifar10
from test_cifar100 import write_fake_cifar100
from test_svhn import write_fake_svhn

from isdarts.benchmark.nb201 import default_table
from isdarts.cli import EXIT_BAD_INPUT, main
from isdarts.config import params_from_dict
from isdarts.data import device_loader
from isdarts.data.cifar import CifarArrays, load_prepared, save_prepared
from isdarts.data.datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    SVHN_MEAN,
    SVHN_STD,
)
from isdarts.data.device_loader import DeviceImages
from isdarts.errors import DataError
from isdarts.pipeline import layout
from isdarts.pipeline.prepare import prepare_data
from isdarts.search import loop
from isdarts.train import retrain as train_retrain

ROOT = Path(__file__).resolve().parents[1]
NB201_METHOD, DARTS_METHOD = "darts1", "gdas"  # bi-level: a cell after one epoch, whatever it learnt
STATS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
         "svhn": (SVHN_MEAN, SVHN_STD)}
N_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}
# What a CIFAR-10 manifest held before it named its dataset.
OLD_MANIFEST_KEYS = {"kind", "verified", "note", "source_path", "classes", "counts", "npz_sha256"}

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_params(project: Path, profile: str = "quick.yaml") -> dict:
    """One-epoch searches of a C=4, N=1 supernet on 8x8 images, and a one-epoch C=4 retrain, with the fake
    datasets' folders under `project`."""
    raw = yaml.safe_load((ROOT / "profiles" / profile).read_text())
    raw["data"].update(cifar10_root=str(project / "raw" / "cifar10"), subset_fallback=str(project / "raw" / "cifar10"),
                       cifar100_root=str(project / "raw" / "cifar100"), svhn_root=str(project / "raw" / "svhn"))
    if profile != "quick.yaml":
        raw["data"]["subset_fallback"] = None
        return raw
    raw["profile"], raw["device"] = "smoke", "cpu"
    tiny = {"C": 4, "N": 1, "epochs": 1, "batch_size": 16, "log_every": 1, "image_size": 8}
    raw["nb201"]["search"].update(tiny)
    raw["darts"]["search"].update(tiny, train_images=16, test_images=8)
    raw["nb201"].update(methods=[NB201_METHOD], seeds=[0],
                        options={NB201_METHOD: raw["nb201"]["options"][NB201_METHOD]})
    darts_options = raw["darts"]["options"]
    # The sweep needs IS-DARTS's section; its own two epochs let its shrink schedule fit.
    darts_options["isdarts"].update(epochs=2, shrink={"steps": 1, "interval": 1})
    raw["darts"].update(methods=[DARTS_METHOD], seeds=[0],
                        options={m: darts_options[m] for m in ("isdarts", DARTS_METHOD)})
    raw["darts"]["retrain"].update(C=4, layers=3, epochs=1, warmup_epochs=0, batch_size=16, auxiliary_weight=0.0,
                                   cutout=4, log_every=1, image_size=16, train_images=16, test_images=8)
    params_from_dict(raw)  # fail here, not inside a CLI call, if the tiny settings stop being valid
    return raw


def write_raw(project: Path, dataset: str) -> None:
    """Small files in the dataset's original format, where tiny_params points."""
    raw = project / "raw" / dataset
    if dataset == "cifar100":
        write_fake_cifar100(raw, n_train=30, n_test=20)
    elif dataset == "svhn":
        write_fake_svhn(raw)
    else:
        write_fake_cifar10(raw, n_per_batch=8, n_test=16)


class Spies:
    """What the search loop and the retrainer built: each DeviceImages' statistics and the supernet's classes."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.loop_stats: list[tuple[tuple, tuple]] = []
        self.retrain_stats: list[tuple[tuple, tuple]] = []
        self.num_classes: list[int] = []
        build_method = loop.build_method

        def recording(into: list):
            class Recorded(DeviceImages):
                def __init__(self, *args, **kwargs) -> None:
                    super().__init__(*args, **kwargs)
                    into.append((self._mean, self._std))

            return Recorded

        def build(cfg, num_classes, device, generator=None):
            self.num_classes.append(num_classes)
            return build_method(cfg, num_classes, device, generator)

        mp.setattr(loop, "DeviceImages", recording(self.loop_stats))
        mp.setattr(train_retrain, "DeviceImages", recording(self.retrain_stats))
        mp.setattr(loop, "build_method", build)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module, created once: MLflow's first migration takes seconds."""
    from isdarts.tracking import Tracker  # mlflow is slow to import; only this fixture needs it up front

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    Tracker("warm-up", tracking_uri=uri).start("create tables")
    return uri


@pytest.fixture(scope="module", params=["cifar100", "svhn"])
def pipeline(request, tmp_path_factory, mlflow_store) -> Iterator[SimpleNamespace]:
    """prepare-data -> NB201 search -> DARTS search -> retrain -> collect, through the CLI, on one dataset."""
    dataset = request.param
    project = tmp_path_factory.mktemp(f"project-{dataset}")
    write_raw(project, dataset)
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(project)))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_store)
        spies = Spies(mp)
        run = ["--seed", "0", "--dataset", dataset, "--no-progress"]
        codes = {
            "prepare": main(["prepare-data", "--dataset", dataset]),
            "nb201": main(["search", "--space", "nb201", "--method", NB201_METHOD, *run]),
            "darts": main(["search", "--space", "darts", "--method", DARTS_METHOD, *run]),
            "retrain": main(["retrain", "--method", DARTS_METHOD, *run]),
            "collect": main(["collect", "--method", NB201_METHOD, "--dataset", dataset]),
        }
        yield SimpleNamespace(dataset=dataset, project=project, codes=codes, spies=spies, store=mlflow_store)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- CIFAR-100 and SVHN end to end


def test_each_step_writes_its_outputs_under_the_datasets_own_paths(pipeline) -> None:
    ds, project = pipeline.dataset, pipeline.project
    assert {k: v for k, v in pipeline.codes.items() if k != "collect"} == dict.fromkeys(
        ("prepare", "nb201", "darts", "retrain"), 0)
    prepared = project / f"data/prepared-{ds}"
    assert {p.name for p in prepared.iterdir()} == {f"{ds}.npz", "manifest.json"}
    assert not (project / "data/prepared").exists()  # CIFAR-10's folder is not touched
    for run in (f"runs/nb201-{ds}/{NB201_METHOD}/seed_0", f"runs/darts-{ds}/search/{DARTS_METHOD}/seed_0"):
        for name in ("genotype.json", "metrics.json", "history.json"):
            assert (project / run / name).is_file(), run + "/" + name
        assert (project / run.replace("runs/", "checkpoints/", 1) / "last.pt").is_file()
    retrained = f"runs/darts-{ds}/retrain/{DARTS_METHOD}/seed_0"
    assert (project / retrained / "metrics.json").is_file() and (project / retrained / "history.json").is_file()
    assert (project / retrained.replace("runs/", "checkpoints/", 1) / "retrain_last.pt").is_file()
    assert not (project / "runs/nb201").exists() and not (project / "runs/darts").exists()


def test_manifest_and_results_name_the_dataset_and_its_classes(pipeline) -> None:
    ds, project = pipeline.dataset, pipeline.project
    manifest = _json(project / f"data/prepared-{ds}/manifest.json")
    mean, std = STATS[ds]
    assert manifest["dataset"] == ds and tuple(manifest["mean"]) == mean and tuple(manifest["std"]) == std
    assert len(manifest["classes"]) == N_CLASSES[ds] and manifest["kind"] == "subset"  # not the official md5s
    label = {"cifar100": "CIFAR-100", "svhn": "SVHN"}[ds]
    for run in (f"runs/nb201-{ds}/{NB201_METHOD}/seed_0", f"runs/darts-{ds}/search/{DARTS_METHOD}/seed_0"):
        metrics, genotype = _json(project / run / "metrics.json"), _json(project / run / "genotype.json")
        assert metrics["dataset"] == genotype["dataset"] == ds
        assert f"data: {label} subset" in metrics["paper_mismatches"]
    retrained = _json(project / f"runs/darts-{ds}/retrain/{DARTS_METHOD}/seed_0/metrics.json")
    assert retrained["dataset"] == ds and f"data: {label} subset" in retrained["paper_mismatches"]
    # Every supernet and the retrained network end in one logit per class of the prepared data.
    assert pipeline.spies.num_classes == [N_CLASSES[ds]] * 2
    model = torch.export.load(project / f"models/darts-{ds}/retrain/{DARTS_METHOD}/seed_0/model.pt2").module()
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, N_CLASSES[ds])


def test_search_and_retrain_normalise_with_the_datasets_own_constants(pipeline) -> None:
    stats = STATS[pipeline.dataset]
    spies = pipeline.spies
    assert len(spies.loop_stats) == 4 and len(spies.retrain_stats) == 2  # train and test, per search / retrain
    assert set(spies.loop_stats) == set(spies.retrain_stats) == {stats}


def test_mlflow_runs_are_tagged_with_the_dataset(pipeline) -> None:
    from mlflow import MlflowClient  # slow import, only here

    client = MlflowClient(tracking_uri=pipeline.store)
    for experiment in ("isdarts-nb201", "isdarts-darts", "isdarts-darts-retrain"):
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], f"tags.dataset = '{pipeline.dataset}'")
        assert len(runs) == 1, experiment
        assert pipeline.dataset in runs[0].info.run_name


def test_nb201_result_uses_the_benchmark_columns_of_its_own_dataset(pipeline, capsys) -> None:
    ds, project = pipeline.dataset, pipeline.project
    metrics = _json(project / f"runs/nb201-{ds}/{NB201_METHOD}/seed_0/metrics.json")
    results = project / f"results/nb201-{ds}_{NB201_METHOD}.json"
    if ds == "svhn":  # NB201 has no SVHN column: the search still finishes, and says so; the lookup refuses
        assert "no SVHN columns" in metrics["benchmark"]["note"]
        assert pipeline.codes["collect"] == EXIT_BAD_INPUT and not results.exists()
        return
    accuracies = default_table().lookup(metrics["arch_str"]).accuracies()
    assert metrics["benchmark"] == {
        "dataset": "cifar100", "valid_column": "cifar100_valid", "test_column": "cifar100_test",
        "valid_acc": accuracies["cifar100_valid"], "test_acc": accuracies["cifar100_test"],
    }
    assert pipeline.codes["collect"] == 0
    collected = _json(results)
    assert collected["dataset"] == "cifar100"
    assert collected["own_columns"] == {"valid": "cifar100_valid", "test": "cifar100_test"}
    assert collected["runs"][0]["own"] == metrics["benchmark"]
    assert collected["summary"]["mean"]["cifar100_test"] == accuracies["cifar100_test"]


# ----------------------------------------------------------------------------- refusals


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str = "quick.yaml") -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tmp_path, profile)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_missing_raw_data_names_dataset_path_and_fix_and_writes_nothing(tmp_path, monkeypatch, capsys, dataset):
    project = _project(tmp_path, monkeypatch)
    assert main(["prepare-data", "--dataset", dataset]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    expected = {"cifar100": ("CIFAR-100 not found", str(project / "raw/cifar100/cifar-100-python")),
                "svhn": ("SVHN not found", str(project / "raw/svhn/train_32x32.mat"))}[dataset]
    assert all(text in err for text in expected), err
    assert f"data.{dataset}_root" in err and "data.download: true" in err
    assert not (project / "data").exists()


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_search_or_retrain_without_prepared_data_names_it_and_the_command(tmp_path, monkeypatch, capsys, dataset):
    project = _project(tmp_path, monkeypatch)
    for step in (["search", "--space", "nb201", "--method", NB201_METHOD], ["retrain", "--method", DARTS_METHOD,
                                                                            "--genotype", "DARTS_V2"]):
        assert main([*step, "--seed", "0", "--dataset", dataset]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        label = {"cifar100": "CIFAR-100", "svhn": "SVHN"}[dataset]
        assert f"prepared {label} missing in data/prepared-{dataset}" in err
        assert f"isdarts prepare-data --dataset {dataset}" in err
    assert not (project / "runs").exists() and not (project / "checkpoints").exists()


def test_corrupt_file_and_paper_profile_refuse_before_writing(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path, monkeypatch)
    write_raw(project, "svhn")
    (project / "raw/svhn/test_32x32.mat").write_bytes(b"not a mat file")
    assert main(["prepare-data", "--dataset", "svhn"]) == EXIT_BAD_INPUT
    assert "test_32x32.mat is truncated or corrupt" in capsys.readouterr().err
    # Profile 'paper' accepts only the official files: the small copy fails the md5 check.
    _project(tmp_path, monkeypatch, "paper.yaml")
    write_raw(project, "cifar100")
    assert main(["prepare-data", "--dataset", "cifar100"]) == EXIT_BAD_INPUT
    assert "CIFAR-100 checksum mismatch" in capsys.readouterr().err
    assert not (project / "data").exists()


def test_prepared_folder_of_another_dataset_is_refused(tmp_path):
    arrays = CifarArrays(np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64), np.zeros((1, 3, 32, 32), np.uint8),
                         np.zeros(1, np.int64), classes=list("0123456789"), dataset="svhn", mean=SVHN_MEAN,
                         std=SVHN_STD)
    save_prepared(arrays, {"kind": "subset"}, tmp_path / "prepared")
    loaded, _ = load_prepared(tmp_path / "prepared", "svhn")
    assert (loaded.dataset, loaded.mean, loaded.std) == ("svhn", SVHN_MEAN, SVHN_STD)
    with pytest.raises(DataError, match="holds prepared SVHN, not CIFAR-100; run `isdarts prepare-data --dataset"):
        load_prepared(tmp_path / "prepared", "cifar100")


# ----------------------------------------------------------------------------- CIFAR-10 unchanged


def test_cifar10_keeps_its_paths_and_constants():
    assert layout.prepared_dir() == layout.prepared_dir("cifar10") == Path("data/prepared")
    assert layout.prepared_dir("svhn") == Path("data/prepared-svhn")
    assert layout.run_dir("nb201", "isdarts", 3) == Path("runs/nb201/isdarts/seed_3")
    assert layout.run_dir("darts", "gdas", 1, step="retrain") == Path("runs/darts/retrain/gdas/seed_1")
    assert layout.run_dir("darts", "isdarts", 0, rate="r1", step="retrain") == Path("runs/darts/sweep/r1/retrain")
    assert layout.run_dir("darts", "isdarts", 0, rate="r1", dataset="svhn") == Path("runs/darts-svhn/sweep/r1/search")
    assert layout.nb201_results_path("isdarts") == Path("results/nb201_isdarts.json")
    # AutoDL's CIFAR-10 statistics, the very objects the loader defaults to.
    assert CIFAR10_MEAN == tuple(v / 255 for v in (125.3, 123.0, 113.9))
    assert CIFAR10_STD == tuple(v / 255 for v in (63.0, 62.1, 66.7))
    assert device_loader.CIFAR10_MEAN is CIFAR10_MEAN and device_loader.CIFAR10_STD is CIFAR10_STD


def test_cifar10_preparation_and_search_are_unchanged(tmp_path, monkeypatch, mlflow_store):
    project = _project(tmp_path, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    write_raw(project, "cifar10")
    manifest = prepare_data(params_from_dict(yaml.safe_load((project / "params.yaml").read_text())))
    prepared = project / "data/prepared"
    assert {p.name for p in prepared.iterdir()} == {"cifar10.npz", "manifest.json"}
    assert set(manifest) == OLD_MANIFEST_KEYS | {"dataset", "mean", "std"} and manifest["dataset"] == "cifar10"
    new, _ = load_prepared(prepared)

    # A manifest written before the dataset keys existed reads as CIFAR-10, with the same constants.
    old = project / "old-prepared"
    shutil.copytree(prepared, old)
    (old / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k in OLD_MANIFEST_KEYS}))
    arrays, _ = load_prepared(old, "cifar10")
    assert (arrays.dataset, arrays.mean, arrays.std) == ("cifar10", CIFAR10_MEAN, CIFAR10_STD)
    assert (new.mean, new.std) == (CIFAR10_MEAN, CIFAR10_STD)  # through JSON, to the last bit
    x = torch.as_tensor(new.train_x[:4])
    assert torch.equal(DeviceImages(x, new.train_y[:4], "cpu").normalise(x),
                       DeviceImages(x, new.train_y[:4], "cpu", new.mean, new.std).normalise(x))

    spies = Spies(monkeypatch)
    assert main(["search", "--space", "nb201", "--method", NB201_METHOD, "--seed", "0", "--no-progress"]) == 0
    run = project / f"runs/nb201/{NB201_METHOD}/seed_0"
    metrics, genotype = _json(run / "metrics.json"), _json(run / "genotype.json")
    assert "dataset" not in metrics and "benchmark" not in metrics and "dataset" not in genotype
    assert "data: CIFAR-10 subset" in metrics["paper_mismatches"]
    assert set(spies.loop_stats) == {(CIFAR10_MEAN, CIFAR10_STD)} and spies.num_classes == [10]
