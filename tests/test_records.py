"""Tests for isdarts.records: every committed stage output round-trips exactly; bad keys name file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isdarts import records
from isdarts.errors import ReportError

ROOT = Path(__file__).resolve().parents[1]


def record_kind(rel: str) -> type[records.Record]:
    """The record a committed file holds, from where the pipeline writes it."""
    name = rel.rsplit("/", 1)[-1]
    if rel.startswith("results/"):
        return records.Nb201Result
    if rel.startswith("runs/darts/imagenet/"):
        return {"metrics.json": records.ImagenetMetrics, "history.json": records.ImagenetHistory}[name]
    if "/retrain/" in rel:
        metrics = records.SweepRetrainMetrics if "/sweep/" in rel else records.RetrainMetrics
        return {"metrics.json": metrics, "history.json": records.RetrainHistory}[name]
    genotype = records.Nb201Genotype if "nb201/" in rel else records.DartsGenotype  # runs/nb201, runs/study/nb201
    search = {"metrics.json": records.SearchMetrics, "history.json": records.SearchHistory}
    return {**search, "genotype.json": genotype}[name]


COMMITTED = sorted(str(p.relative_to(ROOT)) for pattern in ("runs/**/*.json", "results/*.json")
                   for p in ROOT.glob(pattern))


def test_every_kind_of_record_is_committed():
    kinds = {record_kind(rel) for rel in COMMITTED}
    assert len(COMMITTED) >= 50
    assert kinds == {records.Nb201Result, records.ImagenetMetrics, records.ImagenetHistory, records.RetrainMetrics,
                     records.SweepRetrainMetrics, records.RetrainHistory, records.SearchMetrics,
                     records.Nb201Genotype, records.DartsGenotype, records.SearchHistory}


@pytest.mark.parametrize("rel", COMMITTED)
def test_committed_file_round_trips(rel):
    path = ROOT / rel
    kind = record_kind(rel)
    record = kind.read(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert record.to_json() == data
    assert not record.extra  # every committed key has a typed field
    assert kind.from_json(record.to_json(), rel) == record
    # A writer that dumps the record as the stages dump JSON writes the committed bytes.
    assert json.dumps(record.to_json(), indent=2, sort_keys=True, allow_nan=True) + "\n" == path.read_text("utf-8")


def test_manifest_round_trips():
    data = json.loads((ROOT / "data/imagenet_manifest.json").read_text(encoding="utf-8"))
    assert records.ImagenetManifest.from_json(data).to_json() == data


def test_numbers_keep_their_json_type_and_unknown_keys_are_kept():
    data = json.loads((ROOT / "results/nb201_isdarts.json").read_text(encoding="utf-8"))
    data["runs"][0]["search_hours"] = 1  # an int where a float is expected stays an int
    data["added_by_a_writer"] = {"x": [1, 2]}
    record = records.Nb201Result.from_json(data, "r.json")
    assert record.extra == {"added_by_a_writer": {"x": [1, 2]}}
    out = record.to_json()
    assert out == data and type(out["runs"][0]["search_hours"]) is int


def test_optional_key_absent_stays_absent():
    data = json.loads((ROOT / "runs/nb201/darts1/seed_0/metrics.json").read_text(encoding="utf-8"))
    record = records.SearchMetrics.from_json(data)
    assert record.shrink is None and "shrink" not in record.to_json()


def _retrain() -> dict:
    return json.loads((ROOT / "runs/darts/retrain/isdarts/seed_0/metrics.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("final_test_error"), "m.json: missing key 'final_test_error'"),
    (lambda d: d.update(params_m="3.5"), "m.json: key 'params_m' must be int or float, got str"),
    (lambda d: d.update(params_m=True), "m.json: key 'params_m' must be int or float, got True"),
    (lambda d: d.update(params_m=float("inf")), "m.json: key 'params_m' is not a finite number (inf)"),
    (lambda d: d.update(seed=0.5), "m.json: key 'seed' must be int, got float"),
    (lambda d: d.update(space="nb201"), "m.json: key 'space' is 'nb201'; expected 'darts'"),
    (lambda d: d.update(method="nosuch"), "m.json: key 'method' is 'nosuch'; expected 'isdarts' or"),
    (lambda d: d.update(paper_mismatches=["a", 3]), "m.json: paper_mismatches[1]: must be str, got int"),
    (lambda d: d.update(search_cost_unit=None), "m.json: key 'search_cost_unit' is null but 'search_hours' is"),
    (lambda d: d.update(device_name=3), "m.json: key 'device_name' must be str or NoneType, got int"),
])
def test_bad_key_names_file_and_key(mutate, message):
    data = _retrain()
    mutate(data)
    with pytest.raises(ReportError) as info:
        records.RetrainMetrics.from_json(data, "m.json")
    assert message in str(info.value)


def test_nested_errors_name_the_path():
    data = json.loads((ROOT / "results/nb201_darts1.json").read_text(encoding="utf-8"))
    del data["runs"][0]["accuracies"]["cifar100_test"]
    with pytest.raises(ReportError, match=r"^r\.json: runs\[0\]\.accuracies: missing key 'cifar100_test'$"):
        records.Nb201Result.from_json(data, "r.json")
    with pytest.raises(ReportError, match=r"^r\.json: expected a JSON object, got list$"):
        records.Nb201Result.from_json([], "r.json")


def test_history_matrices_must_match_edges_and_ops():
    data = json.loads((ROOT / "runs/darts/search/isdarts/seed_0/history.json").read_text(encoding="utf-8"))
    data["epochs"][1]["iim"]["normal"] = data["epochs"][1]["iim"]["normal"][:3]
    with pytest.raises(ReportError, match=r"h\.json: epochs\[1\]\.iim\.normal: expected a 14x8 list of lists"):
        records.SearchHistory.from_json(data, "h.json")
    del data["epochs"][1]["iim"]["normal"]
    with pytest.raises(ReportError, match=r"h\.json: epochs\[1\]\.iim: missing key 'normal'"):
        records.SearchHistory.from_json(data, "h.json")


def test_read_names_missing_and_malformed_files(tmp_path):
    with pytest.raises(ReportError, match="absent.json: results file not found"):
        records.RetrainMetrics.read(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ReportError, match="bad.json: malformed JSON"):
        records.RetrainMetrics.read(tmp_path / "bad.json")


def test_records_is_a_leaf():
    source = (ROOT / "isdarts/records.py").read_text(encoding="utf-8")
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert {name for name in imports if name.startswith("isdarts")} == {"isdarts.errors", "isdarts.registry"}
    assert not {"torch", "mlflow", "numpy"} & {name.split(".")[0] for name in imports}


def _put_run(root: Path, method: str, seed_dir: str, **changes) -> Path:
    data = {**_retrain(), "method": method, "seed": int(seed_dir[5:]) if seed_dir[5:].isdigit() else 0, **changes}
    path = root / method / seed_dir / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_collect_reads_finished_runs_in_method_and_seed_order(tmp_path, caplog):
    for method, seed_dir in [("isdarts", "seed_10"), ("darts2", "seed_1"), ("isdarts", "seed_2"), ("isdarts", "x_3")]:
        _put_run(tmp_path, method, seed_dir)
    (tmp_path / "isdarts" / "seed_5").mkdir()  # started, not finished
    (tmp_path / "notes.txt").write_text("not a method folder", encoding="utf-8")
    with caplog.at_level("WARNING", logger="isdarts.records"):
        runs = records.RetrainMetrics.collect(tmp_path)
    assert [(r.method, r.seed) for r in runs] == [("darts2", 1), ("isdarts", 2), ("isdarts", 10)]
    assert "seed_5: no metrics.json (run not finished?)" in caplog.text
    assert records.RetrainMetrics.collect(tmp_path / "absent") == []
    assert [seed for seed, _ in records.seed_dirs(tmp_path / "isdarts")] == [2, 5, 10]


@pytest.mark.parametrize("changes, message", [
    ({"method": "darts1"}, r"seed_0[/\\]metrics\.json: key 'method' is 'darts1' but the file lies under 'isdarts'"),
    ({"seed": 4}, r"seed_0[/\\]metrics\.json: key 'seed' is 4 but the file lies under seed_0"),
])
def test_collect_rejects_a_record_in_the_wrong_folder(tmp_path, changes, message):
    path = _put_run(tmp_path, "isdarts", "seed_0")
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")
    with pytest.raises(ReportError, match=message):
        records.RetrainMetrics.collect(tmp_path)
