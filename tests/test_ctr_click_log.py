"""A user's own click log (`data.table`): read exactly as the registered readers read the same files,
splits given as files, errors that name the config key or the file, line and column, and the CLI jobs
(`recarch ctr train | evaluate`, `recarch ihas`) run on it."""
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from recarch.cli import main
from recarch.config import ConfigError, from_dict
from recarch.ctr.datasets import CTRDataConfig, get_ctr_dataset
from recarch.ctr.readers.delimited import DelimitedFormat, read_delimited
from recarch.data.errors import DataFormatError, DataWarning

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CRITEO = DATA / "ctr-samples" / "criteo_sample.txt"
INTER = DATA / "ml-100k" / "ml-100k.inter"
pytestmark = pytest.mark.skipif(not (CRITEO.exists() and INTER.exists()), reason="shared data absent")
CRITEO_TABLE = {"path": str(CRITEO), "sep": "comma", "numeric": [f"I{i}" for i in range(1, 14)]}
ML_TABLE = {"path": str(INTER), "label": "rating", "label_threshold": 4, "drop": ["timestamp"]}


def load(table: dict, **data):
    return from_dict(CTRDataConfig, {"table": table, **data}).load(cache=False)


def same_arrays(a, b) -> bool:
    return all(np.array_equal(getattr(getattr(a, s), k), getattr(getattr(b, s), k))
               for s in ("train", "valid", "test") for k in ("cat", "num", "label"))


def test_a_table_of_the_criteo_sample_reads_as_the_criteo_reader_does(tmp_path):
    mine = load(CRITEO_TABLE)
    registered = get_ctr_dataset("criteo-sample", data_dir=str(DATA), cache=False)
    assert mine.schema == registered.schema and same_arrays(mine, registered)


def test_a_recbole_atomic_file_with_a_rating_threshold_gives_ml_100k_ctrs_labels_and_ids(tmp_path):
    mine = load(ML_TABLE)
    registered = get_ctr_dataset("ml-100k-ctr", data_dir=str(DATA), cache=False)
    assert mine.schema.fields == ["user_id", "item_id"] and mine.schema.numeric == []
    for split in ("train", "valid", "test"):
        a, b = getattr(mine, split), getattr(registered, split)
        assert np.array_equal(a.label, b.label) and np.array_equal(a.cat, b.cat[:, :2])
    # RecBole types decide without column lists: the other float column (timestamp) is numeric
    typed = load({k: v for k, v in ML_TABLE.items() if k != "drop"})
    assert typed.schema.numeric == ["timestamp"] and typed.schema.fields == ["user_id", "item_id"]


def test_a_gzipped_csv_with_quoted_separators_keeps_each_value_whole(tmp_path):
    import csv
    import gzip

    items = dict(line.split("\t")[:2] for line in (DATA / "ml-100k" / "ml-100k.item").read_text(
        encoding="latin-1").splitlines()[1:])
    ratings = [line.split("\t") for line in INTER.read_text().splitlines()[1:3001]]
    rows = [(int(r) >= 4, u, i, items[i]) for u, i, r, _ in ratings]
    assert sum("," in title for *_, title in rows) > 100  # e.g. "Usual Suspects, The": quoted in the file
    path = tmp_path / "clicks.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["click", "user", "item", "title"])
        writer.writerows((int(y), u, i, t) for y, u, i, t in rows)
    fmt = DelimitedFormat("click", ",", categorical=("user", "item", "title"))
    chunk = read_delimited(path, fmt)
    assert chunk.cat["title"].tolist() == [t for *_, t in rows] and chunk.label.tolist() == [float(y) for y, *_ in rows]
    data = load({"path": str(path), "label": "click"})  # sep from the name: comma for .csv(.gz)
    assert data.schema.fields == ["user", "item", "title"]
    assert sum(len(getattr(data, s).label) for s in ("train", "valid", "test")) == 3000


def test_a_parquet_log_gives_the_arrays_of_the_same_rows_as_text(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    numeric = [f"I{i}" for i in range(1, 14)]
    frame = pd.read_csv(CRITEO, dtype={f"C{i}": str for i in range(1, 27)}, keep_default_na=False,
                        na_values={c: [""] for c in numeric}).astype({c: "float64" for c in numeric})
    frame.loc[frame["C3"] == "", "C3"] = None  # a null is missing, as an empty field is in CSV
    assert frame["C3"].isna().sum() > 0 and frame["I1"].isna().sum() > 0
    frame.to_parquet(tmp_path / "criteo.parquet", row_group_size=64)
    mine = load({"path": str(tmp_path / "criteo.parquet")})  # floating-point columns are numeric
    registered = get_ctr_dataset("criteo-sample", data_dir=str(DATA), cache=False)
    assert mine.schema == registered.schema and same_arrays(mine, registered)

    ratings = pd.read_csv(INTER, sep="\t")  # integer columns: tokens
    ratings.columns = [c.split(":")[0] for c in ratings.columns]
    ratings.to_parquet(tmp_path / "ratings.parquet")
    mine = load({**ML_TABLE, "path": str(tmp_path / "ratings.parquet")})
    registered = get_ctr_dataset("ml-100k-ctr", data_dir=str(DATA), cache=False)
    for split in ("train", "valid", "test"):
        a, b = getattr(mine, split), getattr(registered, split)
        assert np.array_equal(a.label, b.label) and np.array_equal(a.cat, b.cat[:, :2])

    frame.loc[5, "label"] = 2
    frame.to_parquet(tmp_path / "bad.parquet", row_group_size=64)
    with pytest.raises(DataFormatError, match=r"bad\.parquet:6: field 'label': expected a label 0 or 1, found '2'"):
        load({"path": str(tmp_path / "bad.parquet")})
    with pytest.raises(DataFormatError, match=r"bad\.parquet: field 'header': expected columns click"):
        load({"path": str(tmp_path / "bad.parquet"), "label": "click"})


def test_files_given_as_the_splits_keep_their_rows_and_the_vocabulary_comes_from_train(tmp_path):
    header, *rows = CRITEO.read_text().splitlines()
    parts = {"train": rows[:120], "valid": rows[120:160], "test": rows[160:]}
    for split, lines in parts.items():
        (tmp_path / f"{split}.csv").write_text("\n".join([header] + lines) + "\n")
    data = load({**CRITEO_TABLE, "path": "", **{s: str(tmp_path / f"{s}.csv") for s in parts}})
    for split, lines in parts.items():
        assert np.array_equal(getattr(data, split).label, [float(line.split(",")[0]) for line in lines])
    c1 = [line.split(",")[14] for line in rows]  # the first categorical column
    unseen = [i for i, v in enumerate(c1[120:160]) if v not in set(c1[:120])]
    assert unseen and all(data.valid.cat[i, 0] == 0 for i in unseen)
    assert data.schema.vocab_sizes[0] == len(set(c1[:120]) - {""}) + 1


def test_config_mistakes_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'table.lable'.*did you mean 'label'"):
        load({**CRITEO_TABLE, "lable": "label"})
    with pytest.raises(ConfigError, match=r"data.table: set either path or train/valid/test, not both"):
        load({**CRITEO_TABLE, "train": "a.csv"})
    with pytest.raises(ConfigError, match=r"data.table: the splits as files need train, valid and test; "
                                          r"missing valid, test"):
        load({**CRITEO_TABLE, "path": "", "train": "a.csv"})
    with pytest.raises(ConfigError, match=r"data.table.sep: expected one of comma, tab"):
        load({**CRITEO_TABLE, "sep": "commas"})
    with pytest.raises(FileNotFoundError, match=r"click log 'absent': missing .*absent\.csv"):
        load({**CRITEO_TABLE, "path": str(tmp_path / "absent.csv")})


def test_data_mistakes_name_the_file_line_and_column(tmp_path):
    lines = CRITEO.read_text().splitlines()
    with pytest.raises(DataFormatError, match=r"criteo_sample\.txt:1: field 'header': expected columns .*no click"):
        load({**CRITEO_TABLE, "label": "click"})
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:5] + ["2" + lines[5][1:]] + lines[6:]) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:6: field 'label': expected a label 0 or 1, found '2'"):
        load({**CRITEO_TABLE, "path": str(bad)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load({**CRITEO_TABLE, "path": str(bad)}, skip_bad_rows=True)
    assert any(issubclass(w.category, DataWarning) for w in caught)
    assert sum(len(getattr(data, s).label) for s in ("train", "valid", "test")) == len(lines) - 2
    # a chunk with a line of too many or too few fields is split line by line; its other rows come out
    # as those of a clean chunk, which is parsed in one pass
    clean, ragged = tmp_path / "clean.csv", tmp_path / "ragged.csv"
    clean.write_text("\n".join(lines[:5] + lines[7:]) + "\n")
    ragged.write_text("\n".join(lines[:5] + [lines[5] + ",1", lines[6].rsplit(",", 1)[0]] + lines[7:]) + "\n")
    fmt = DelimitedFormat("label", ",", numeric=tuple(CRITEO_TABLE["numeric"]),
                          categorical=tuple(f"C{i}" for i in range(1, 27)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        slow, fast = read_delimited(ragged, fmt, skip_bad_rows=True), read_delimited(clean, fmt)
    assert slow.cat.equals(fast.cat) and np.array_equal(slow.num, fast.num, equal_nan=True)
    assert np.array_equal(slow.label, fast.label) and len(fast.label) == len(lines) - 3
    with pytest.raises(DataFormatError, match=r"ragged\.csv:6: field 'row': expected 40 comma-separated fields, found 41"):
        read_delimited(ragged, fmt)
    fields = lines[3].split(",")
    fields[1] = "many"
    bad.write_text("\n".join(lines[:3] + [",".join(fields)] + lines[4:]) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:4: field 'I1': expected a number or nothing, found 'many'"):
        load({**CRITEO_TABLE, "path": str(bad)})
    with pytest.raises(DataFormatError, match=r"field 'label': expected one role per column"):
        load({**CRITEO_TABLE, "categorical": ["label", "C1"]})
    seq = tmp_path / "seq.inter"
    seq.write_text("user_id:token\titem_id:token\tgenres:token_seq\tlabel:float\n1\t2\ta b\t1\n")
    with pytest.raises(DataFormatError, match=r"seq\.inter:1: field 'genres': expected a token or float column"):
        load({"path": str(seq)})


def test_cli_trains_evaluates_and_runs_ihas_on_a_table_given_by_a_relative_path(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "ratings.inter").write_bytes(INTER.read_bytes())
    monkeypatch.chdir(folder)
    table = ["data.table.path=ratings.inter", "data.table.label=rating", "data.table.label_threshold=4",
             "data.table.drop=[timestamp]"]
    small = ["model.embed_dim=4", "model.mlp=[16]", "train.epochs=1", "train.progress=false", "cost.enabled=false",
             "train.batch_size=4096"]
    assert main(["ctr", "train", "--model", "deepfm", "--out-dir", str(tmp_path / "runs"),
                 *[x for s in table + small for x in ("--set", s)]]) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert run_dir.name.startswith("deepfm-ratings-")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["rows"] == 10000 and 0.6 < metrics["test"]["auc"] < 1
    monkeypatch.chdir(tmp_path)  # the run's config.yaml holds the file's absolute path
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["table"]["path"] == str(folder / "ratings.inter")
    capsys.readouterr()
    assert main(["ctr", "evaluate", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == pytest.approx(metrics["test"]["auc"])

    tiny = ["model.embed_dim=4", "model.mlp=[16]", "blocks=2", "search.epochs=1", "retrain.epochs=1",
            "cost.enabled=false", "gate.hash_buckets=32", "reg_warmup_epochs=0", "reg_ramp_epochs=0.5"]
    config = tmp_path / "my-clicks.yaml"
    config.write_text(yaml.safe_dump({"data": {"table": {"path": str(folder / "ratings.inter"), "label": "rating",
                                                         "label_threshold": 4, "drop": ["timestamp"]}}}))
    assert main(["ihas", "--config", str(config), "--backbone", "dcnv2", "--clusters", "2",
                 "--out-dir", str(tmp_path / "ihas"), *[x for s in tiny for x in ("--set", s)]]) == 0
    (ihas_dir,) = list((tmp_path / "ihas").iterdir())
    summary = json.loads((ihas_dir / "summary.json").read_text())
    assert ihas_dir.name.startswith("ihas-dcnv2-ratings-") and summary["methods"]["ihas"]["test"]["auc"] > 0.6


def test_ctr_search_runs_on_a_table_and_its_retrained_winner_reloads(tmp_path, capsys):
    from test_ctr_run import TINY_SEARCH

    table = ["--set", f"data.table.path={INTER}", "--set", "data.table.label=rating",
             "--set", "data.table.label_threshold=4", "--set", "data.table.drop=[timestamp]"]
    assert main(["ctr", "search", "--out-dir", str(tmp_path), *TINY_SEARCH, *table]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    assert run_dir.name.startswith("ctr-search-ml-100k-")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["dataset"] == "ml-100k"
    capsys.readouterr()
    assert main(["ctr", "evaluate", str(run_dir / "retrain" / "arch-1-seed42")]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == pytest.approx(summary["modes"]["arch"]["winner"]["test"]["auc"])
