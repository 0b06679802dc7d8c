"""``python -m comparisons uci-table``: the comparison of several UCI runs through ``main``, and
its user errors as one line and exit code 2."""

from __future__ import annotations

import pandas as pd
import pytest

from comparisons.cli.main import SUBCOMMAND_MODULES, main


def _write_run(folder, method, epochs_multiplier, values):
    folder.mkdir(parents=True)
    rows = [{"dataset": "yacht", "method": method, "split": k, "metric": metric,
             "value": v if metric == "rmse" else -v, "epochs_multiplier": epochs_multiplier}
            for k, v in enumerate(values) for metric in ("rmse", "test_ll")]
    pd.DataFrame(rows).to_csv(folder / "records.csv", index=False)
    return folder / "records.csv"


@pytest.fixture
def inputs(tmp_path):
    published = tmp_path / "published.csv"
    published.write_text("dataset,method,setting,metric,mean,spread,spread_kind,source\n"
                         "yacht,mc_dropout,x100,rmse,0.72,0.06,se,Gal 2016\n")
    return {"x10": _write_run(tmp_path / "x10", "mc_dropout", 10.0, [2.0, 2.5, 3.0]),
            "x100": _write_run(tmp_path / "x100", "mc_dropout", 100.0, [1.0, 1.5]),
            "published": published, "out": tmp_path / "out"}


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_uci_table_is_registered():
    assert SUBCOMMAND_MODULES["uci-table"] == "comparisons.cli.uci_table"


def test_uci_table_end_to_end(inputs, capsys):
    out = inputs["out"]
    code = main(["uci-table", "--records", str(inputs["x10"]), "--records",
                 str(inputs["x100"].parent), "--published", str(inputs["published"]),
                 "--all-published", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("report.md", "records.csv", "ranking.csv"):
        assert (out / name).is_file() and str(out / name) in printed
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| mc_dropout | x100 | 0.72 ± 0.06 (SE) | – | [1] |" in report
    assert "Best test LL: mc_dropout x100 (next: mc_dropout x10, difference" in report
    records = pd.read_csv(out / "records.csv")
    assert sorted(set(records["variant"])) == ["mc_dropout x10", "mc_dropout x100"]
    assert set(records["source_file"]) == {str(inputs["x10"]), str(inputs["x100"])}


def test_a_records_path_that_does_not_exist_is_one_line(inputs, tmp_path, capsys):
    missing = tmp_path / "nope" / "records.csv"
    code = main(["uci-table", "--records", str(inputs["x10"]), "--records", str(missing),
                 "--published", str(inputs["published"]), "--out", str(inputs["out"])])
    assert code == 2
    assert _error_line(capsys) == f"error: records file {missing} does not exist"
    assert not inputs["out"].exists()


def test_a_folder_without_records_csv_is_one_line(inputs, tmp_path, capsys):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    code = main(["uci-table", "--records", str(empty), "--published", str(inputs["published"]),
                 "--out", str(inputs["out"])])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: records folder {empty} has no records.csv")
    assert not inputs["out"].exists()


def test_the_same_records_twice_is_one_line(inputs, tmp_path, capsys):
    copy = tmp_path / "copy.csv"
    copy.write_text(inputs["x10"].read_text())
    code = main(["uci-table", "--records", str(inputs["x10"]), "--records", str(copy),
                 "--published", str(inputs["published"]), "--out", str(inputs["out"])])
    assert code == 2
    line = _error_line(capsys)
    assert str(inputs["x10"]) in line and str(copy) in line


def test_records_are_required(inputs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["uci-table", "--out", str(inputs["out"])])
    assert exc.value.code == 2
    assert "the following arguments are required: --records" in capsys.readouterr().err
