"""``python -m comparisons uci-table``: the comparison of several UCI runs through ``main``, and
its user errors as one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


# --- the records are read by the one reader, and --out never overwrites them (issue 30) -------
ROOT = Path(__file__).resolve().parents[3]


def _yacht_run(folder, splits=20):
    """A finished ``uci`` run of yacht: ``records.csv`` (2 records per split) and ``report.md``."""
    path = _write_run(folder, "mc_dropout", 10.0, [1.0 + k / 8 for k in range(splits)])
    (folder / "report.md").write_text("# the run's own report\n")
    return path


def _uci_table(*argv):
    """``python -m comparisons uci-table ...`` in a process: ``(exit code, stderr lines)``."""
    proc = subprocess.run([sys.executable, "-m", "comparisons", "uci-table", *map(str, argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


def _cut_mid_value(path):
    """``path`` cut inside the value of split 6's rmse (``1.75`` -> ``1.7``), as a copy that
    stopped half-way leaves it."""
    text = path.read_text()
    cut = "yacht,mc_dropout,6,rmse,1.7"
    path.write_text(text[: text.index(cut) + len(cut)])


@pytest.mark.parametrize("damage, line, problem, in_a_process", [
    (_cut_mid_value, 14, "the file ends without a newline: it is truncated (cut short by a "
                         "write or copy that stopped), so this last record may be cut "
                         "mid-value and the records after it are missing; export or copy it "
                         "again", True),
    (lambda p: p.write_text(p.read_text().splitlines(True)[0]), 1,
     "has a header but no records", False),
    (lambda p: p.write_text(p.read_text().replace(",-1.125,", ",nan,")), 5,
     "the value 'nan' is not finite: every value must be a finite number", False),
])
def test_a_damaged_records_file_is_one_line(tmp_path, capsys, damage, line, problem,
                                           in_a_process):
    """In a real process for one case (exit code and stderr as a user sees them; each process
    costs seconds of imports), in-process for the others."""
    records = _yacht_run(tmp_path / "run")
    damage(records)
    out = tmp_path / "out"
    if in_a_process:
        code, err = _uci_table("--records", records.parent, "--out", out)
    else:
        code = main(["uci-table", "--records", str(records.parent), "--out", str(out)])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert err == [f"error: records file {records}, line {line}: {problem}"]
    assert not out.exists()


@pytest.mark.parametrize("value, problem", [
    ("inf", "the value 'inf' is not finite"),
    ("-inf", "the value '-inf' is not finite"),
    ("", "the value is empty (NaN, or missing)"),
])
def test_a_non_finite_value_is_one_line(tmp_path, capsys, value, problem):
    records = _yacht_run(tmp_path / "run", splits=3)
    records.write_text(records.read_text().replace(",1.25,", f",{value},"))
    code = main(["uci-table", "--records", str(records), "--out", str(tmp_path / "out")])
    assert code == 2
    assert _error_line(capsys).startswith(f"error: records file {records}, line 6: {problem}")
    assert not (tmp_path / "out").exists()


def _unchanged(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_at_the_records_folder_is_one_line_through_a_process(tmp_path):
    records = _yacht_run(tmp_path / "run")
    before = _unchanged(records.parent)
    code, err = _uci_table("--records", records.parent, "--out", records.parent)
    assert code == 2
    assert err == [f"error: --out {records.parent} is the folder of the records being read "
                   f"({records}): writing report.md, records.csv, ranking.csv there would "
                   "overwrite that run's files; choose another --out"]
    assert _unchanged(records.parent) == before


@pytest.mark.parametrize("out", ["{run}", "{run}/", "{run}/../run", "{link}"])
def test_out_at_the_folder_of_a_records_file_is_refused(tmp_path, capsys, out):
    other = _yacht_run(tmp_path / "other", splits=2)
    records = _yacht_run(tmp_path / "run", splits=3)
    (tmp_path / "link").symlink_to(records.parent)
    before = _unchanged(records.parent)
    out = out.format(run=records.parent, link=tmp_path / "link")
    code = main(["uci-table", "--records", str(other), "--records", str(records), "--out", out])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: --out {Path(out)} is the folder of the records being read "
                           f"({records})")
    assert _unchanged(records.parent) == before


def test_out_that_would_overwrite_the_published_numbers_is_refused(inputs, tmp_path, capsys):
    published = tmp_path / "pub" / "records.csv"
    published.parent.mkdir()
    published.write_text(inputs["published"].read_text())
    code = main(["uci-table", "--records", str(inputs["x10"]), "--published", str(published),
                 "--out", str(published.parent)])
    assert code == 2
    assert "would overwrite the published numbers being read" in _error_line(capsys)
    assert published.read_text() == inputs["published"].read_text()


def test_a_combined_records_file_reads_back(inputs, tmp_path, capsys):
    out = inputs["out"]
    assert main(["uci-table", "--records", str(inputs["x10"]), "--records", str(inputs["x100"]),
                 "--published", str(inputs["published"]), "--out", str(out)]) == 0
    again = tmp_path / "again"
    assert main(["uci-table", "--records", str(out), "--published", str(inputs["published"]),
                 "--out", str(again)]) == 0
    capsys.readouterr()
    assert (again / "ranking.csv").read_text() == (out / "ranking.csv").read_text()


def test_out_at_the_real_folder_of_a_linked_records_file_is_refused(tmp_path, capsys):
    """--records through a symlink to another run's records.csv, --out at that run's folder: the
    run's files would be overwritten (they were); refused before anything is written."""
    records = _yacht_run(tmp_path / "run", splits=3)
    before = _unchanged(records.parent)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "records.csv").symlink_to(records)
    code = main(["uci-table", "--records", str(tmp_path / "links"), "--out", str(records.parent)])
    assert code == 2
    assert "is the folder of the records being read" in _error_line(capsys)
    assert _unchanged(records.parent) == before


def test_against_an_earlier_run_adds_the_split_by_split_section(inputs, tmp_path, capsys):
    earlier = _write_run(tmp_path / "earlier", "mc_dropout", 100.0, [1.1, 1.4, 9.0])
    out = inputs["out"]
    code = main(["uci-table", "--records", str(inputs["x10"]), "--records", str(inputs["x100"]),
                 "--against", str(earlier.parent), "--out", str(out)])
    assert code == 0
    assert str(out / "reproduction.csv") in capsys.readouterr().out
    rows = pd.read_csv(out / "reproduction.csv")
    # only x100 pairs with the earlier x100 run, on its splits 0 and 1 (split 2 is not in x100)
    assert rows["epochs_multiplier"].tolist() == [100.0, 100.0]
    assert rows["n_splits"].tolist() == [2, 2]
    rmse = rows[rows["metric"] == "rmse"].iloc[0]
    assert rmse["difference"] == pytest.approx(((1.0 - 1.1) + (1.5 - 1.4)) / 2, abs=1e-12)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Against the earlier run" in report
    assert "| yacht | mc_dropout x100 | rmse | 2 | 1.25 ± 0.25 | 1.25 ± 0.15 |" in report
    # the same --out without --against: no reproduction.csv of the earlier comparison is left
    assert main(["uci-table", "--records", str(inputs["x100"]), "--out", str(out)]) == 0
    assert not (out / "reproduction.csv").exists()
    assert "Against the earlier run" not in (out / "report.md").read_text(encoding="utf-8")


def test_against_errors_are_one_line(inputs, tmp_path, capsys):
    other = _write_run(tmp_path / "x1", "mc_dropout", 1.0, [1.0])
    for argv, expected in (
            (["--against", str(inputs["x100"])], "both a records file and an earlier run"),
            (["--against", str(other)], "share no cell"),
            (["--against", str(tmp_path / "missing")], "missing")):
        code = main(["uci-table", "--records", str(inputs["x100"]), *argv,
                     "--out", str(inputs["out"])])
        assert code == 2
        assert expected in _error_line(capsys)
    assert not (inputs["out"] / "report.md").exists()
    earlier = inputs["x100"].parent
    code = main(["uci-table", "--records", str(inputs["x10"]), "--against", str(earlier),
                 "--out", str(earlier)])
    assert code == 2 and "overwrite" in _error_line(capsys)


def test_against_names_the_runs_it_could_not_compare(inputs, tmp_path, capsys):
    earlier = _write_run(tmp_path / "earlier", "mc_dropout", 100.0, [1.1, 1.4])
    assert main(["uci-table", "--records", str(inputs["x10"]), "--records", str(inputs["x100"]),
                 "--against", str(earlier), "--out", str(inputs["out"])]) == 0
    report = (inputs["out"] / "report.md").read_text(encoding="utf-8")
    assert "Not in the earlier run (not compared): yacht mc_dropout x10." in report
