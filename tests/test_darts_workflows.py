"""The DARTS-space pipeline steps (isdarts.pipeline.retrain and .imagenet) on tiny nets: retraining (files,
resume, MLflow, bad genotypes), the ImageNet data step, and ImageNet transfer on one process and on two
torchrun ranks."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import write_fake_cifar10
from PIL import Image

from isdarts.config.train import ImagenetConfig, RetrainConfig
from isdarts.data.cifar import CLASSES, load_cifar10, locate_cifar10, save_prepared
from isdarts.data.device_loader import CIFAR10_MEAN, CIFAR10_STD
from isdarts.data.downsample import reduce_cifar
from isdarts.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, check_imagefolder
from isdarts.errors import ConfigError, DataError, GenotypeError, NonFiniteLossError
from isdarts.pipeline.imagenet import IMAGENET_EXPERIMENT, TransferRun, prepare_imagenet_data, transfer_run
from isdarts.pipeline.retrain import RETRAIN_EXPERIMENT, RetrainRun, retrain_run
from isdarts.spaces.darts.genotype import load_named_genotype
from isdarts.spaces.darts.network import NetworkImageNet
from isdarts.train.export import load_trained
from isdarts.train.imagenet import CHECKPOINT_NAME as IMAGENET_CKPT
from isdarts.train.retrain import CHECKPOINT_NAME as RETRAIN_CKPT
from isdarts.train.retrain import TIMING_KEYS, build_network

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
# 16x16 images, so no auxiliary head (it needs 32x32); 32 images in batches of 16: 2 steps an epoch.
RETRAIN = RetrainConfig(
    C=4, layers=3, epochs=2, warmup_epochs=1, batch_size=16, lr=0.05, auxiliary_weight=0.0, drop_path_prob=0.2,
    cutout=4, log_every=1,
)
DATA = {"image_size": 16, "train_images": 32, "test_images": 16}
RUN_INFO = {"method": "isdarts", "profile": "smoke", "paper_settings": False, "paper_mismatches": ["epochs: 2"]}
# Deterministic ImageNet settings (no augmentation, BN on running statistics), as in test_imagenet_transfer.py.
IMAGENET = {
    "C": 4, "layers": 3, "epochs": 2, "warmup_epochs": 1, "batch_size": 8, "image_size": 32, "flops_size": 32,
    "auxiliary_weight": 0.0, "augment": False, "bn": "frozen", "workers": 0, "record_step_losses": True,
}
MACHINE_KEYS = {"images_per_s_mean", "train_seconds", "cost_hours"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module, created up front: MLflow's first migration takes seconds."""
    from isdarts.tracking import Tracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    Tracker("warm-up", tracking_uri=uri).start("create tables")
    return uri


@pytest.fixture
def mlflow_env(store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return store


def _runs(store: str, experiment: str, stage: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`dvc.stage` = '{stage}'")


def _steps(store: str, run_id: str, key: str) -> list[int]:
    from mlflow import MlflowClient

    return sorted(m.step for m in MlflowClient(tracking_uri=store).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def arrays(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(root, n_per_batch=10, n_test=30, seed=0)
    return load_cifar10(locate_cifar10(root, download=False, subset_fallback=root))


def _genotype_file(folder: Path, *, search_metrics: bool = True, genotype: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "genotype.json"
    data = genotype or {**load_named_genotype("ISDARTS").to_json(), "method": "isdarts", "seed": 0}
    path.write_text(json.dumps(data))
    if search_metrics:
        (folder / "metrics.json").write_text(json.dumps({"search_hours": 0.25, "cost_unit": "CPU-hours"}))
    return path


def _retrain(
    arrays, genotype_file: Path, tmp: Path, name: str, cfg: RetrainConfig = RETRAIN, run_info: dict = RUN_INFO,
    **kwargs,
):
    run = RetrainRun(
        genotype_file, cfg, **DATA, seed=0, device="cpu", out_dir=tmp / name / "out",
        checkpoint_dir=tmp / name / "ckpt", run_info=run_info,
    )
    return retrain_run(run, arrays, **kwargs)


def _strip(metrics: dict, history: list[dict]) -> tuple[dict, list[dict]]:
    return ({k: v for k, v in metrics.items() if k not in MACHINE_KEYS},
            [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history])


# ----------------------------------------------------------------------------- retraining


def test_retrain_run_writes_schema_and_resumes_into_the_same_mlflow_run(arrays, tmp_path, mlflow_env) -> None:
    gfile = _genotype_file(tmp_path / "search")
    full = _retrain(arrays, gfile, tmp_path, "full", tracking=False)
    out = tmp_path / "full" / "out"
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "metrics.json", "model.pt2"]
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert metrics == full
    assert metrics["space"] == "darts" and metrics["method"] == "isdarts" and metrics["profile"] == "smoke"
    assert metrics["paper_settings"] is False and metrics["paper_mismatches"] == ["epochs: 2"]
    assert metrics["genotype"] == str(load_named_genotype("ISDARTS")) and metrics["genotype_file"] == str(gfile)
    assert (metrics["search_hours"], metrics["search_cost_unit"]) == (0.25, "CPU-hours")
    assert (metrics["image_size"], metrics["train_images"], metrics["test_images"]) == (16, 32, 16)
    assert metrics["epochs"] == 2 and metrics["final_test_acc"] == history[-1]["test_acc"]
    assert metrics["params_m"] > 0 and metrics["config"]["C"] == 4 and metrics["seed"] == 0
    assert [r["epoch"] for r in history] == [1, 2]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "drop_path", "images_per_s"} <= set(history[0])

    stage = "retrain-resume"
    stopped = _retrain(arrays, gfile, tmp_path, "killed", stage=stage, stop_after_epochs=1)
    assert stopped["finished"] is False and stopped["epochs_done"] == 1
    assert not (tmp_path / "killed" / "out").exists()
    [run] = _runs(mlflow_env, RETRAIN_EXPERIMENT, stage)
    assert run.info.status == "KILLED"
    resumed = _retrain(arrays, gfile, tmp_path, "killed", stage=stage)
    resumed_history = json.loads((tmp_path / "killed" / "out" / "history.json").read_text())["epochs"]
    assert _strip(resumed, resumed_history) == _strip(full, history)

    [run] = _runs(mlflow_env, RETRAIN_EXPERIMENT, stage)  # still one run: the resume continued it
    assert run.info.status == "FINISHED" and run.data.tags["isdarts.resume_count"] == "1"
    assert run.data.tags["space"] == "darts" and run.data.tags["method"] == "isdarts"
    assert run.data.tags["profile"] == "smoke" and run.data.tags["seed"] == "0"
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "drop_path", "images_per_s"):
        assert _steps(mlflow_env, run.info.run_id, key) == [1, 2], key
    assert run.data.metrics["final_test_acc"] == pytest.approx(resumed["final_test_acc"])
    assert run.data.metrics["madds_m"] > 0 and run.data.tags["model_file"] == str(tmp_path / "killed/out/model.pt2")
    network = build_network(load_named_genotype("ISDARTS"), RETRAIN)
    trained = load_trained(network, tmp_path / "killed/ckpt" / RETRAIN_CKPT)
    images = reduce_cifar(arrays, image_size=16, train_images=1, test_images=8).test_x  # a CIFAR batch, as trained
    _check_logged_model(mlflow_env, run, trained, images, CIFAR10_MEAN, CIFAR10_STD)


def _check_logged_model(store: str, run, trained, images: np.ndarray, mean, std) -> None:
    """The run's MLflow model loads with mlflow alone, predicts on a uint8 image batch (given as pixels in
    [0, 1]) what the `trained` network (normalised as in training) predicts, and carries genotype and size."""
    import mlflow
    import mlflow.pytorch
    import torch

    uri = run.data.tags["model_uri"]
    assert uri.startswith("models:/") and os.environ["MLFLOW_TRACKING_URI"] == store  # where load_model looks
    loaded = mlflow.pytorch.load_model(uri)
    batch = torch.from_numpy(images).float() / 255
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (mean, std))
    with torch.no_grad():
        expected = trained((batch - mean) / std)[0]
        torch.testing.assert_close(loaded(batch), expected, rtol=1e-4, atol=1e-5)
    model = mlflow.MlflowClient(tracking_uri=store).get_logged_model(uri.removeprefix("models:/"))
    assert model.source_run_id == run.info.run_id and model.params["genotype"] == str(load_named_genotype("ISDARTS"))
    assert float(model.params["params_m"]) > 0 and float(model.params["madds_m"]) > 0
    assert model.tags["method"] == "isdarts"


def test_retrain_run_copies_run_info_and_nulls_missing_search_cost(arrays, tmp_path) -> None:
    gfile = _genotype_file(tmp_path / "search", search_metrics=False)
    info = {**RUN_INFO, "rate": 0.143, "rate_label": "0.143", "steps": 7, "interval": None, "anchor": "end"}
    cfg = RetrainConfig(**{**RETRAIN.__dict__, "epochs": 1, "warmup_epochs": 0})
    metrics = _retrain(arrays, gfile, tmp_path, "sweep", cfg=cfg, run_info=info, tracking=False)
    assert metrics["search_hours"] is None and metrics["search_cost_unit"] is None
    for key in ("rate", "rate_label", "steps", "interval", "anchor"):
        assert metrics[key] == info[key]


BAD_GENOTYPES = {
    "unknown op": (lambda g: g["normal"][1].__setitem__(0, ["conv_9x9", 0]), r"normal node 1 entry 0 .*unknown op"),
    "input out of range": (lambda g: g["reduce"][0].__setitem__(1, ["sep_conv_3x3", 2]),
                           r"reduce node 0 entry 1 .*input 2 out of range"),
    "three inputs": (lambda g: g["normal"][2].append(["skip_connect", 1]),
                     r"normal node 2: expected 2 \(op, input\) pairs, got 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_GENOTYPES))
def test_bad_genotype_is_rejected_before_training(arrays, tmp_path, case: str) -> None:
    genotype = copy.deepcopy(load_named_genotype("ISDARTS").to_json())
    edit, message = BAD_GENOTYPES[case]
    edit(genotype)
    gfile = _genotype_file(tmp_path / "search", genotype=genotype)
    with pytest.raises(GenotypeError, match=rf"genotype\.json: {message}"):
        _retrain(arrays, gfile, tmp_path, "bad", tracking=False)
    assert not (tmp_path / "bad").exists()


def test_missing_genotype_file_and_bad_inputs_fail_before_training(arrays, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere/genotype\.json not found"):
        _retrain(arrays, tmp_path / "nowhere" / "genotype.json", tmp_path, "x", tracking=False)
    gfile = _genotype_file(tmp_path / "search")
    with pytest.raises(ValueError, match=r"auxiliary_weight = 0.4 needs 32x32 images.*16x16"):
        _retrain(arrays, gfile, tmp_path, "x", cfg=RetrainConfig(**{**RETRAIN.__dict__, "auxiliary_weight": 0.4}),
                 tracking=False)
    with pytest.raises(ValueError, match=r"run_info lacks \['paper_mismatches'\]"):
        _retrain(arrays, gfile, tmp_path, "x", run_info={k: v for k, v in RUN_INFO.items() if k != "paper_mismatches"})
    with pytest.raises(ValueError, match=r"run_info may not set \['image_size'\]"):
        _retrain(arrays, gfile, tmp_path, "x", run_info={**RUN_INFO, "image_size": 8})
    assert not (tmp_path / "x").exists()


def test_failed_retrain_writes_nothing_and_ends_the_run_failed(arrays, tmp_path, mlflow_env) -> None:
    gfile = _genotype_file(tmp_path / "search")
    exploding = RetrainConfig(**{**RETRAIN.__dict__, "warmup_epochs": 0, "lr": 1e30})
    with pytest.raises(NonFiniteLossError):
        _retrain(arrays, gfile, tmp_path, "nan", cfg=exploding, stage="retrain-nan")
    assert not (tmp_path / "nan" / "out").exists()
    [run] = _runs(mlflow_env, RETRAIN_EXPERIMENT, "retrain-nan")
    assert run.info.status == "FAILED"


# ----------------------------------------------------------------------------- ImageNet data


@pytest.fixture(scope="module")
def prepared(arrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    save_prepared(arrays, {"kind": "subset", "verified": False, "note": "synthetic"}, out)
    return out


@pytest.fixture(scope="module")
def imagenet_manifest(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tree of 2 train / 1 val images per class (20 / 10) and its manifest."""
    folder = tmp_path_factory.mktemp("imagenet")
    manifest = folder / "manifest.json"
    prepare_imagenet_data(None, prepared_dir=prepared, tiny_dir=folder / "tiny", manifest_path=manifest,
                          train_per_class=2, val_per_class=1)
    return manifest


def test_prepare_imagenet_data_builds_a_checked_tiny_tree(prepared, tmp_path) -> None:
    tiny, manifest_path = tmp_path / "tiny", tmp_path / "imagenet_manifest.json"
    kwargs = {"prepared_dir": prepared, "tiny_dir": tiny, "manifest_path": manifest_path}
    manifest = prepare_imagenet_data(None, **kwargs, train_per_class=3, val_per_class=2)
    assert json.loads(manifest_path.read_text()) == manifest
    assert manifest["tiny"] is True and manifest["root"] == str(tiny)
    assert manifest["classes"] == sorted(CLASSES)
    assert manifest["counts"] == {"train": dict.fromkeys(CLASSES, 3), "val": dict.fromkeys(CLASSES, 2)}
    assert manifest["split_totals"] == {"train": 30, "val": 20}
    assert check_imagefolder(tiny)["counts"] == manifest["counts"]

    # Rebuilt, not added to; a failed rebuild (too few images per class) leaves the last tree whole.
    assert prepare_imagenet_data(None, **kwargs, train_per_class=1, val_per_class=1)["split_totals"] == {
        "train": 10, "val": 10}
    with pytest.raises(DataError, match=r"fewer than per_class=99"):
        prepare_imagenet_data(None, **kwargs, train_per_class=99, val_per_class=1)
    assert check_imagefolder(tiny)["split_totals"] == {"train": 10, "val": 10}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no temp folders, no stale manifest

    real = tmp_path / "real"
    real.mkdir()
    (real / "train").symlink_to(tiny / "train")
    (real / "val").symlink_to(tiny / "val")
    given = prepare_imagenet_data(real, **kwargs, train_per_class=1, val_per_class=1)
    assert given["tiny"] is False and given["root"] == str(real) and given["split_totals"]["train"] == 10


def test_prepare_imagenet_data_rejects_bad_roots_without_a_manifest(prepared, tmp_path) -> None:
    manifest_path = tmp_path / "imagenet_manifest.json"
    empty, flat = tmp_path / "empty", tmp_path / "flat"
    empty.mkdir()
    flat.mkdir()
    (flat / "img.png").write_bytes(b"x")
    cases = {tmp_path / "missing": "does not exist", empty: "is empty", flat: "not an ImageFolder tree"}
    for root, problem in cases.items():
        manifest_path.write_text("{}")  # a previous run's manifest must not survive a failed one
        with pytest.raises(DataError, match=rf"{root}.*{problem}.*<root>/train/<class>"):
            prepare_imagenet_data(root, prepared_dir=prepared, tiny_dir=tmp_path / "tiny", manifest_path=manifest_path,
                                  train_per_class=1, val_per_class=1)
        assert not manifest_path.exists()


# ----------------------------------------------------------------------------- ImageNet transfer


def _transfer(genotype_file: Path, manifest: Path, out: Path, cfg: dict | None = None, **kwargs):
    run = TransferRun(
        genotype_file, ImagenetConfig(**{**IMAGENET, **(cfg or {})}), manifest_path=manifest, seed=3,
        device="cpu", out_dir=out / "out", checkpoint_dir=out / "ckpt", run_info=RUN_INFO,
    )
    return transfer_run(run, **kwargs)


TORCHRUN_SCRIPT = """
import json, os, sys
from pathlib import Path

import torch

from isdarts.config.train import ImagenetConfig
from isdarts.pipeline.imagenet import TransferRun, transfer_run

torch.set_num_threads(1)
a = json.loads(sys.argv[1])
run = TransferRun(
    Path(a["genotype"]), ImagenetConfig(**a["cfg"]), manifest_path=Path(a["manifest"]), seed=3, device="cpu",
    out_dir=Path(a["out"]), checkpoint_dir=Path(a["ckpt"]), run_info=a["run_info"],
)
result = transfer_run(run, stage=a["stage"])
rank = os.environ["RANK"]
Path(a["returns"], f"rank{rank}.json").write_text(json.dumps(None if result is None else result["world_size"]))
"""


@pytest.mark.slow
def test_transfer_run_one_process_and_two_ranks_agree(imagenet_manifest, tmp_path, mlflow_env) -> None:
    gfile = _genotype_file(tmp_path / "search")
    one = _transfer(gfile, imagenet_manifest, tmp_path / "one", stage="imagenet-one")
    out = tmp_path / "one" / "out"
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "metrics.json", "model.pt2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == one and "history" not in metrics
    for key in ("top1_error", "top5_error", "params_m", "madds_m"):
        assert isinstance(metrics[key], float) and metrics[key] >= 0, key
    assert metrics["madds_input"] == 32 and metrics["world_size"] == 1 and metrics["bn"] == "frozen"
    assert metrics["data"] == {"root": str(imagenet_manifest.parent / "tiny"), "split_totals": {"train": 20, "val": 10},
                               "classes": 10, "tiny": True}
    assert metrics["space"] == "darts" and metrics["method"] == "isdarts" and metrics["genotype_file"] == str(gfile)
    assert (metrics["search_hours"], metrics["search_cost_unit"]) == (0.25, "CPU-hours")
    assert metrics["paper_settings"] is False and metrics["genotype"] == str(load_named_genotype("ISDARTS"))
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in history] == [1, 2]
    [run] = _runs(mlflow_env, IMAGENET_EXPERIMENT, "imagenet-one")
    assert run.info.status == "FINISHED" and _steps(mlflow_env, run.info.run_id, "top1_error") == [1, 2]
    network = NetworkImageNet(load_named_genotype("ISDARTS"), C=4, num_classes=10, layers=3, auxiliary=False)
    trained = load_trained(network, tmp_path / "one/ckpt" / IMAGENET_CKPT)
    images = np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1)
                       for f in sorted((imagenet_manifest.parent / "tiny" / "val").rglob("*.*"))[:4]])
    _check_logged_model(mlflow_env, run, trained, images, IMAGENET_MEAN, IMAGENET_STD)

    two, returns = tmp_path / "two", tmp_path / "returns"
    returns.mkdir()
    script = tmp_path / "launch.py"
    script.write_text(TORCHRUN_SCRIPT)
    args = {"genotype": str(gfile), "cfg": IMAGENET, "manifest": str(imagenet_manifest), "out": str(two / "out"),
            "ckpt": str(two / "ckpt"), "run_info": RUN_INFO, "stage": "imagenet-two", "returns": str(returns)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": mlflow_env}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", str(script),
           json.dumps(args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Rank 0 returns and writes the metrics; rank 1 returns None; one MLflow run for the two processes.
    assert {p.name: json.loads(p.read_text()) for p in returns.iterdir()} == {"rank0.json": 2, "rank1.json": None}
    assert sorted(p.name for p in (two / "out").iterdir()) == ["history.json", "metrics.json", "model.pt2"]
    assert sorted(p.name for p in (two / "ckpt").iterdir()) == ["imagenet_last.pt"]
    [run2] = _runs(mlflow_env, IMAGENET_EXPERIMENT, "imagenet-two")
    assert run2.info.status == "FINISHED" and run2.data.tags["world_size"] == "2"
    two_metrics = json.loads((two / "out" / "metrics.json").read_text())
    two_history = json.loads((two / "out" / "history.json").read_text())["epochs"]
    losses_one = [s for r in history for s in r["step_losses"]]
    losses_two = [s for r in two_history for s in r["step_losses"]]
    assert len(losses_one) == 4 and losses_one[0] != losses_one[-1]
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5, atol=1e-6)
    for key in ("top1_error", "top5_error", "params_m", "madds_m"):
        assert two_metrics[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6)


def test_transfer_run_refuses_a_world_size_that_does_not_divide_the_batch(
    imagenet_manifest, tmp_path, monkeypatch
) -> None:
    gfile = _genotype_file(tmp_path / "search")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match=r"batch_size 8 with 3 processes: world size 3 does not divide the batch 8"):
        _transfer(gfile, imagenet_manifest, tmp_path / "odd", tracking=False)
    assert not (tmp_path / "odd").exists()


def test_transfer_run_checks_config_manifest_and_tree_first(imagenet_manifest, tmp_path) -> None:
    gfile = _genotype_file(tmp_path / "search")
    with pytest.raises(ValueError, match=r"auxiliary_weight = 0.4 needs images of at least 193 pixels.*= 32 gives"):
        _transfer(gfile, imagenet_manifest, tmp_path / "x", tracking=False, cfg={"auxiliary_weight": 0.4})
    with pytest.raises(DataError, match=r"manifest .*nope\.json not found; run `dvc repro imagenet_data`"):
        _transfer(gfile, tmp_path / "nope.json", tmp_path / "x", tracking=False)
    tree = tmp_path / "tree"
    manifest = json.loads(imagenet_manifest.read_text())
    import shutil

    shutil.copytree(manifest["root"], tree)
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps({**manifest, "root": str(tree)}))
    next((tree / "train" / "cat").iterdir()).unlink()
    with pytest.raises(DataError, match=r"tree at .*tree changed since .*moved\.json"):
        _transfer(gfile, moved, tmp_path / "x", tracking=False)
    assert not (tmp_path / "x").exists()
