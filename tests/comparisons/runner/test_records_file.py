"""The one reader of records files (:func:`comparisons.runner.records_file.read_records`): what it
reads, and each way a file is refused, naming the file, the line and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from comparisons.runner.records_file import RecordsFileError, read_records, records_path
from comparisons.runner.store import ResultsStore, make_cell_id

ROOT = Path(__file__).resolve().parents[3]
HEADER = "dataset,method,split,metric,value,epochs_multiplier\n"
ROWS = ["yacht,mc_dropout,0,rmse,1.25,10.0\n", "yacht,mc_dropout,0,test_ll,-2.5,10.0\n",
        "yacht,mc_dropout,1,rmse,0.1,10.0\n"]


@pytest.fixture
def write(tmp_path):
    """``write(text, name="records.csv") -> path`` in a fresh folder."""
    def _write(text, name="records.csv"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return _write


def _refused(path, **kwargs) -> RecordsFileError:
    with pytest.raises(RecordsFileError) as exc:
        read_records(path, **kwargs)
    assert isinstance(exc.value, ValueError) and exc.value.path == Path(path)
    assert str(exc.value).startswith(f"records file {path}")
    return exc.value


def test_a_good_file_reads_with_exact_values(write):
    path = write(HEADER + "".join(ROWS))
    df = read_records(path.parent)  # a folder means its records.csv
    assert df["value"].tolist() == [1.25, -2.5, 0.1]
    assert df["split"].tolist() == [0, 0, 1] and df["epochs_multiplier"].tolist() == [10.0] * 3


def test_the_committed_uci_records_read():
    for folder in sorted((ROOT / "docs" / "uci").iterdir()):
        if (folder / "records.csv").is_file():
            assert len(read_records(folder)) > 0, folder


def test_a_missing_path_or_folder_without_records():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        records_path(ROOT / "no-such-records.csv")
    with pytest.raises(FileNotFoundError, match="has no records.csv"):
        records_path(ROOT / "docs" / "api")


@pytest.mark.parametrize("cut", [1, 3, 6])
def test_a_file_cut_mid_record_is_truncated(write, cut):
    text = HEADER + "".join(ROWS)
    err = _refused(write(text[:-cut]))
    assert err.line == 4 and "the file ends without a newline: it is truncated" in str(err)


@pytest.mark.parametrize("text, line, problem", [
    ("", None, "is empty: no header, no records"),
    ("\n \n", None, "is empty: no header, no records"),
    (HEADER, 1, "has a header but no records"),
    (HEADER + ROWS[0] + "yacht,mc_dropout,0\n" + ROWS[2], 3, "has 3 fields, the header 6"),
    (HEADER + ROWS[0] + 'yacht,"mc_dropout,0,rmse,1.0,10.0\n', 3, "is not valid CSV"),
    ("dataset,method,split,value\n" + "yacht,mc,0,1.0\n", 1, "lacks column(s) ['metric']"),
    (HEADER.replace("epochs_multiplier", "value") + ROWS[0], 1, "repeats the column(s) ['value']"),
    (HEADER + ROWS[0] + ROWS[1].replace("-2.5", "nan"), 3, "the value 'nan' is not finite"),
    (HEADER + ROWS[0] + ROWS[1].replace("-2.5", "inf"), 3, "the value 'inf' is not finite"),
    (HEADER + ROWS[0] + ROWS[1].replace("-2.5", "-Infinity"), 3, "'-Infinity' is not finite"),
    (HEADER + ROWS[0] + ROWS[1].replace("-2.5", ""), 3, "the value is empty (NaN, or missing)"),
    (HEADER + ROWS[0] + ROWS[1].replace("-2.5", "-2.5.1"), 3, "'-2.5.1' is not a number"),
    (HEADER + ROWS[0] + ROWS[1].replace("-2.5", "1_000"), 3, "'1_000' is not a number"),
    (HEADER + ROWS[0] + ROWS[1].replace("test_ll", ""), 3, "the record has an empty metric"),
    (HEADER + "".join(ROWS) + ROWS[0], 5, "repeats the record of line 2 (dataset=yacht, "
     "method=mc_dropout, split=0, metric=rmse; the same epochs_multiplier): a record given "
     "twice"),
])
def test_a_bad_file_is_refused_naming_the_line(write, text, line, problem):
    err = _refused(write(text))
    assert err.line == line and problem in str(err)
    where = f"records file {err.path}" + (f", line {line}" if line else "")
    assert str(err) == f"{where}: {err.problem}"


def test_records_of_other_settings_are_not_duplicates(write):
    path = write(HEADER + ROWS[0] + ROWS[0].replace("10.0", "100.0") + "\n")  # and a blank line
    assert read_records(path)["epochs_multiplier"].tolist() == [10.0, 100.0]


def test_an_empty_split_is_a_record_of_no_split_unless_splits_are_required(write):
    path = write(HEADER + ROWS[0].replace(",0,", ",,"))
    assert read_records(path)["split"].isna().all()
    err = _refused(path, non_empty=("dataset", "method", "split", "metric"))
    assert err.line == 2 and err.problem == "the record has an empty split"


def _exported_run(folder: Path, splits: int = 3) -> Path:
    """A results folder of ``splits`` cells (2 records each), exported."""
    store = ResultsStore(folder)
    for k in range(splits):
        store.write_cell(make_cell_id("yacht", k, {"e": 10}, "mc_dropout"), [
            {"dataset": "yacht", "method": "mc_dropout", "split": k, "metric": m,
             "value": v + k / 3, "config": {"e": 10}} for m, v in (("rmse", 1.0), ("test_ll", -2.0))])
    return store.export()["csv"]


def test_an_export_reads_and_is_checked_against_its_records_json(tmp_path):
    path = _exported_run(tmp_path / "run")
    assert len(read_records(path)) == 6
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1])  # cut at a line end
    err = _refused(path)
    assert err.line is None and err.problem.startswith(
        "has 5 records, records.json beside it 6: one of them is truncated")
    path.write_text(text.replace(",rmse,1.0,", ",rmse,1.5,"))
    err = _refused(path)
    assert err.line == 2 and err.problem.startswith(
        "says value=1.5 but record 0 of records.json beside it says value=1.0")
    assert len(read_records(path, check_beside=False)) == 6


def test_an_export_is_checked_against_the_cells_beside_it(tmp_path):
    path = _exported_run(tmp_path / "run")
    path.with_name("records.json").unlink()
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1])  # the last cell cut in half
    err = _refused(path)
    assert err.line == 6 and "has 1 record of cell 'yacht/mc_dropout/split-02/" in err.problem
    path.write_text(text)
    ResultsStore(path.parent).write_cell("yacht/mc_dropout/split-09/x", [
        {"dataset": "yacht", "method": "mc_dropout", "split": 9, "metric": "rmse", "value": 1.0}])
    err = _refused(path)
    assert err.problem.startswith("lacks the records of 1 finished cell(s) in cells/ beside it "
                                  "(e.g. 'yacht/mc_dropout/split-09/x')")


def test_a_damaged_cell_is_not_compared(tmp_path):
    path = _exported_run(tmp_path / "run")
    cell = sorted((path.parent / "cells").glob("*.json"))[0]
    cell.write_text(cell.read_text()[:40])  # damaged after the export
    assert len(read_records(path)) == 6


def test_a_records_json_of_another_shape_is_refused(tmp_path):
    path = _exported_run(tmp_path / "run")
    path.with_name("records.json").write_text(json.dumps({"records": []}))
    assert "which is not a list of records" in _refused(path).problem


def test_pandas_writes_what_the_reader_reads(tmp_path):
    frame = pd.DataFrame([{"dataset": "yacht", "method": "gp", "split": k, "metric": "rmse",
                           "value": 0.1 * (k + 1), "config": json.dumps({"a": [1, 2]})}
                          for k in range(3)])
    frame.to_csv(tmp_path / "records.csv", index=False)
    pd.testing.assert_frame_equal(read_records(tmp_path), frame)


def test_an_edit_in_both_exports_is_caught_by_the_cells(tmp_path):
    """A value edited in records.csv AND records.json alike (the cells untouched) was read as
    is; the cells beside the exports are what the run computed."""
    from comparisons.runner.executors import run_cells
    from comparisons.runner.store import ResultsStore

    store = ResultsStore(tmp_path)
    run_cells([{"cell_id": f"yacht-{k}"} for k in range(2)], lambda cell: [
        {"dataset": "yacht", "method": "mc", "split": int(cell["cell_id"][-1]),
         "metric": "rmse", "value": 15.89 + int(cell["cell_id"][-1])}], store, progress=False)
    paths = store.export()
    assert len(read_records(paths["csv"])) == 2
    for key in ("csv", "json"):
        paths[key].write_text(paths[key].read_text().replace("16.89", "1.0"))
    with pytest.raises(RecordsFileError, match=r"its mc rmse = 1.0 of cell 'yacht-1' is not the "
                                               r"value in cells/"):
        read_records(paths["csv"])
