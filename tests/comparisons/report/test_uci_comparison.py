"""The comparison of several UCI runs: variants, mean ± SE, the paired ranking, the published
numbers and the report files (:mod:`comparisons.report.uci_comparison`)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from comparisons.report.styles import METHOD_STYLES
from comparisons.report.uci_comparison import (
    PUBLISHED_METRICS,
    PUBLISHED_PATH,
    SHOWN_PUBLISHED_SETTINGS,
    SPREAD_KINDS,
    comparison_markdown,
    comparison_table,
    load_published,
    load_records,
    paired_ranking,
    write_comparison_report,
)

MC10_RMSE = [3.0, 2.5, 4.0, 3.5]
MC10_LL = [-2.5, -2.25, -2.75, -2.0]
MC100_RMSE = [2.0, 2.5, 3.25, 3.0]
MC100_LL = [-2.0, -2.125, -2.5, -2.25]
GP_RMSE = [2.5, 2.0]  # splits 1 and 3 only
GP_LL = [-2.0, -1.5]
GP_COVERAGE = [0.9, 0.95]


def _rows(dataset, method, metric, values, splits=None, **settings):
    splits = range(len(values)) if splits is None else splits
    return [{"dataset": dataset, "method": method, "split": s, "metric": metric, "value": v,
             **settings} for s, v in zip(splits, values)]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def runs(tmp_path):
    """Three run folders: MC dropout x10 (with the GP, no epochs multiplier), MC dropout x100,
    and the paths of their records."""
    x10 = [*_rows("yacht", "mc_dropout", "rmse", MC10_RMSE, epochs_multiplier=10.0,
                  num_samples=100),
           *_rows("yacht", "mc_dropout", "test_ll", MC10_LL, epochs_multiplier=10.0,
                  num_samples=100)]
    gp = [*_rows("yacht", "gp_se", "rmse", GP_RMSE, splits=[1, 3]),
          *_rows("yacht", "gp_se", "test_ll", GP_LL, splits=[1, 3]),
          *_rows("yacht", "gp_se", "coverage_95", GP_COVERAGE, splits=[1, 3])]
    x100 = [*_rows("yacht", "mc_dropout", "rmse", MC100_RMSE, epochs_multiplier=100.0,
                   num_samples=100),
            *_rows("yacht", "mc_dropout", "test_ll", MC100_LL, epochs_multiplier=100.0,
                   num_samples=100)]
    return {"x10": _write(tmp_path / "x10" / "records.csv", x10),
            "gp": _write(tmp_path / "gp" / "records.csv", gp),
            "x100": _write(tmp_path / "x100" / "records.csv", x100)}


@pytest.fixture
def published_csv(tmp_path):
    rows = [
        ("boston", "mc_dropout", "x100 epochs", "rmse", "2.97", "0.85", "sd", "Gal 2016"),
        ("yacht", "mc_dropout", "x100 epochs", "rmse", "1.11", "0.38", "sd", "Gal 2016"),
        ("yacht", "mc_dropout", "x100 epochs", "test_ll", "-1.55", "0.12", "se", "Gal 2016"),
        ("yacht", "deep_ensemble", "", "test_ll", "-1.18", "0.21", "unknown", "Lak. 2017"),
        ("yacht", "pbp", "", "rmse", "1.025", "", "unknown", "HL | 2015"),
    ]
    path = tmp_path / "published.csv"
    path.write_text("dataset,method,setting,metric,mean,spread,spread_kind,source\n"
                    + "".join(",".join(r) + "\n" for r in rows))
    return path


def _hand_mean_se(values):
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


# --- variants and reading ---------------------------------------------------------------------
def test_variant_labels_carry_the_epochs_multiplier_only_when_it_varies(runs):
    df = load_records(list(runs.values()))
    labels = dict(zip(df["source_file"], df["variant"]))
    assert labels[str(runs["x10"])] == "mc_dropout x10"
    assert labels[str(runs["x100"])] == "mc_dropout x100"
    assert labels[str(runs["gp"])] == "gp_se"  # no multiplier
    assert set(df.loc[df["method"] == "gp_se", "epochs_multiplier"].isna()) == {True}
    # one multiplier only: the plain method id
    assert set(load_records([runs["x10"], runs["gp"]])["variant"]) == {"mc_dropout", "gp_se"}


def test_a_folder_is_read_as_its_records_csv(runs):
    by_folder = load_records([runs["x10"].parent])
    by_file = load_records(runs["x10"])
    pd.testing.assert_frame_equal(by_folder, by_file)
    assert len(by_file) == 2 * len(MC10_RMSE)


def test_missing_paths_and_folders_without_records_are_errors(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records([runs["x10"], tmp_path / "nope.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no records.csv"):
        load_records([tmp_path / "empty"])
    with pytest.raises(ValueError, match="given twice"):
        load_records([runs["x10"], runs["x10"].parent])
    bad = _write(tmp_path / "bad.csv", [{"dataset": "yacht", "method": "m", "value": 1.0}])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['split', 'metric'\]"):
        load_records([bad])


def test_duplicate_records_across_files_name_both_files(tmp_path, runs):
    copy = _write(tmp_path / "copy" / "records.csv", pd.read_csv(runs["x10"]).to_dict("records"))
    with pytest.raises(ValueError) as exc:
        load_records([runs["x10"], runs["gp"], copy])
    msg = str(exc.value)
    assert str(runs["x10"]) in msg and str(copy) in msg
    assert "dataset=yacht, variant=mc_dropout, split=0, metric=rmse" in msg


def test_duplicate_records_within_one_file_are_an_error(tmp_path):
    rows = [*_rows("yacht", "mc", "rmse", [1.0, 2.0], num_samples=10),
            *_rows("yacht", "mc", "rmse", [1.5, 2.5], num_samples=100)]
    path = _write(tmp_path / "r.csv", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path} holds several records for dataset=yacht")):
        load_records([path])


# --- the table ---------------------------------------------------------------------------------
def test_mean_and_standard_error_by_hand(runs):
    table = comparison_table(load_records(list(runs.values())))
    assert table["kind"].unique().tolist() == ["run"]
    row = table.set_index("variant").loc["mc_dropout x10"]
    mean, se = _hand_mean_se(MC10_RMSE)  # 3.25, sqrt(5/12)/2
    assert row["rmse_mean"] == mean == 3.25
    assert row["rmse_spread"] == pytest.approx(se, rel=1e-15)
    assert se == pytest.approx(math.sqrt(5 / 12) / 2, rel=1e-15)
    assert (row["rmse_spread_kind"], row["rmse_n"], row["n_splits"]) == ("se", 4, 4)
    gp = table.set_index("variant").loc["gp_se"]
    m, s = _hand_mean_se(GP_LL)
    assert (gp["test_ll_mean"], gp["n_splits"]) == (m, 2)
    assert gp["test_ll_spread"] == pytest.approx(s, rel=1e-15)
    assert gp["coverage_95_mean"] == pytest.approx(np.mean(GP_COVERAGE), rel=1e-15)
    assert np.isnan(row["coverage_95_mean"]) and pd.isna(row["coverage_95_n"])
    assert np.isnan(row["wall_time_s_mean"])  # no such records at all
    assert row["setting"] == "epochs_multiplier=10, num_samples=100"


def test_rows_follow_the_method_order_of_the_styles(runs, published_csv):
    table = comparison_table(load_records([runs["x100"], runs["gp"], runs["x10"]]),
                             load_published(published_csv))
    run_rows = table[table["kind"] == "run"]["variant"].tolist()
    assert run_rows == ["mc_dropout x10", "mc_dropout x100", "gp_se"]
    order = list(METHOD_STYLES)
    assert order.index("mc_dropout") < order.index("gp_se")
    # data sets in name order; published rows after the runs of their data set
    assert table["dataset"].tolist() == ["bostonHousing"] + ["yacht"] * 6
    assert table["kind"].tolist() == ["published", "run", "run", "run", "published",
                                      "published", "published"]
    yacht_pub = table[(table["kind"] == "published") & (table["dataset"] == "yacht")]
    assert yacht_pub["variant"].tolist() == ["mc_dropout (x100 epochs)", "deep_ensemble", "pbp"]
    mc = yacht_pub.iloc[0]
    assert (mc["rmse_mean"], mc["rmse_spread"], mc["rmse_spread_kind"]) == (1.11, 0.38, "sd")
    assert (mc["test_ll_spread_kind"], mc["source"]) == ("se", "Gal 2016")


# --- the paired ranking ------------------------------------------------------------------------
def test_paired_difference_and_se_on_the_shared_splits(runs):
    records = load_records(list(runs.values()))
    ranking = paired_ranking(records, "test_ll", higher_is_better=True)
    # means: gp -1.75 (splits 1, 3), x100 -2.21875, x10 -2.375
    assert ranking["variant"].tolist() == ["gp_se", "mc_dropout x100", "mc_dropout x10"]
    assert ranking["rank"].tolist() == [1, 2, 3] and set(ranking["best"]) == {"gp_se"}
    best = ranking.iloc[0]
    assert pd.isna(best["mean_diff"]) and pd.isna(best["n_shared"])
    assert pd.isna(best["significant"])
    for name, values in (("mc_dropout x100", MC100_LL), ("mc_dropout x10", MC10_LL)):
        row = ranking.set_index("variant").loc[name]
        diff = np.array(GP_LL, dtype=np.float64) - np.array(values, dtype=np.float64)[[1, 3]]
        assert row["mean_diff"] == pytest.approx(diff.mean(), rel=1e-15)
        assert row["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(2), rel=1e-15)
        assert (row["n_shared"], row["n_splits"]) == (2, 4)
        assert row["mean"] == pytest.approx(np.mean(values), rel=1e-15)

    rmse = paired_ranking(records, "rmse", higher_is_better=False)
    # means: gp 2.25, x100 2.6875, x10 3.25; best minus other is negative for the RMSE
    assert rmse["variant"].tolist() == ["gp_se", "mc_dropout x100", "mc_dropout x10"]
    x10 = rmse.set_index("variant").loc["mc_dropout x10"]
    diff = np.array(GP_RMSE) - np.array(MC10_RMSE)[[1, 3]]
    assert x10["mean_diff"] == pytest.approx(diff.mean(), rel=1e-15) and x10["mean_diff"] < 0


def _pair(best_values, other_values):
    return [*_rows("d", "a", "test_ll", best_values), *_rows("d", "b", "test_ll", other_values)]


def test_significance_flips_exactly_at_two_standard_errors():
    # differences (3, 1): mean 2, SE sqrt(2) / sqrt(2) = 1 exactly: |2| > 2 SE is false
    at = paired_ranking(_pair([3.0, 1.0], [0.0, 0.0]), "test_ll", True).iloc[1]
    assert (at["variant"], at["mean_diff"], at["se"]) == ("b", 2.0, 1.0)
    assert not at["significant"]
    above = paired_ranking(_pair([3.0 + 2e-9, 1.0 + 2e-9], [0.0, 0.0]), "test_ll", True).iloc[1]
    assert above["se"] == pytest.approx(1.0, rel=1e-12) and above["mean_diff"] > 2.0
    assert above["significant"]
    below = paired_ranking(_pair([3.0 - 2e-9, 1.0 - 2e-9], [0.0, 0.0]), "test_ll", True).iloc[1]
    assert not below["significant"]
    # one shared split: no SE, never significant
    one = paired_ranking(_pair([3.0, 1.0], [0.0]), "test_ll", True).iloc[1]
    assert one["n_shared"] == 1 and np.isnan(one["se"]) and not one["significant"]


def test_the_paired_comparison_sees_what_the_means_hide():
    # b is worse than a by 0.01 on every split: the means overlap, the pairs do not
    base = [-1.0, -2.0, -1.5, -2.5, -1.2]
    ranking = paired_ranking(_pair(base, [v - 0.01 for v in base]), "test_ll", True)
    row = ranking.iloc[1]
    assert row["mean_diff"] == pytest.approx(0.01) and row["se"] < 1e-12
    assert row["significant"]


# --- the published numbers ---------------------------------------------------------------------
def test_published_numbers_are_read_and_checked(published_csv, tmp_path):
    pub = load_published(published_csv)
    assert pub["dataset"].tolist()[:2] == ["bostonHousing", "yacht"]  # alias resolved
    assert pub["setting"].tolist()[3] == "" and np.isnan(pub["spread"].iloc[4])
    header = "dataset,method,setting,metric,mean,spread,spread_kind,source\n"
    bad = {
        "yacht,mc_dropout,,nll,1.0,0.1,sd,x\n": "line 2: metric 'nll' is not one of",
        "yacht,mc_dropout,,rmse,1.0,0.1,iqr,x\n": "spread_kind 'iqr' is not one of",
        "nope,mc_dropout,,rmse,1.0,0.1,sd,x\n": "unknown UCI data set 'nope'",
        "yacht,mc_dropout,,rmse,,0.1,sd,x\n": "mean '' is not a finite number",
        "yacht,mc_dropout,,rmse,1.0,-1,sd,x\n": "spread '-1' is not a number >= 0",
        "yacht,mc_dropout,,rmse,1.0,abc,sd,x\n": "spread 'abc' is not a number >= 0",
        "yacht,,,rmse,1.0,0.1,sd,x\n": "empty method",
        "yacht,m,,rmse,1.0,0.1,sd,x\nyacht,m,,rmse,2.0,0.1,sd,y\n": "line 3: a second row",
    }
    for i, (text, expected) in enumerate(bad.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(header + text)
        with pytest.raises(ValueError, match=expected) as exc:
            load_published(path)
        assert str(path) in str(exc.value)
    with pytest.raises(FileNotFoundError):
        load_published(tmp_path / "nope.csv")


@pytest.mark.skipif(not PUBLISHED_PATH.is_file(), reason="published_uci.csv not written yet")
def test_the_packaged_published_numbers_parse():
    from comparisons.datasets.uci import UCI_DATASETS

    pub = load_published()
    assert len(pub)
    assert set(pub["dataset"]) <= set(UCI_DATASETS)
    assert set(pub["metric"]) <= set(PUBLISHED_METRICS)
    assert set(pub["spread_kind"]) <= set(SPREAD_KINDS)
    assert pub["method"].str.len().min() > 0 and np.isfinite(pub["mean"]).all()
    assert (pub.loc[pub["metric"] == "rmse", "mean"] >= 0).all()  # naval's is printed 0.00


# --- Markdown and files ------------------------------------------------------------------------
def _markdown(runs, published_csv):
    records = load_records(list(runs.values()))
    table = comparison_table(records, load_published(published_csv))
    return comparison_markdown(table, paired_ranking(records, "test_ll", True),
                               paired_ranking(records, "rmse", False))


def test_markdown_tables_published_rows_and_best_lines(runs, published_csv):
    text = _markdown(runs, published_csv)
    lines = text.splitlines()
    assert "| variant | rmse | test_ll | coverage_95 | wall_time_s (per split) | n |" in lines
    # no coverage in the MC dropout runs, no wall times anywhere: "–"
    assert "| mc_dropout x10 | 3.25 ± 0.32 | -2.38 ± 0.16 | – | – | 4 |" in lines
    assert "| gp_se | 2.25 ± 0.25 | -1.75 ± 0.25 | 0.925 ± 0.025 | – | 2 |" in lines
    # the overview: test LL of every variant, the best in bold
    assert "| dataset | mc_dropout x10 | mc_dropout x100 | gp_se |" in lines
    assert "| yacht | -2.38 ± 0.16 | -2.22 ± 0.11 | **-1.75 ± 0.25** |" in lines
    # published rows with what their ± is, the decimals of the source, numbered sources
    assert "| mc_dropout | x100 epochs | 1.11 ± 0.38 (SD) | -1.55 ± 0.12 (SE) | [1] |" in lines
    assert "| deep_ensemble | – | – | -1.18 ± 0.21 (±?) | [2] |" in lines
    assert "| pbp | – | 1.025 | – | [3] |" in lines
    assert lines[-3:] == ["1. Gal 2016", "2. Lak. 2017", "3. HL | 2015"]
    assert "2.97" not in text  # Boston has no runs: no section
    # differences: LL gp - x100 on splits 1, 3: (0.125, 0.75); RMSE gp - x100: (0, -1)
    assert ("Best test LL: gp_se (next: mc_dropout x100, difference 0.44 ± 0.31 over 2 shared "
            "splits: within noise)") in lines
    assert ("Best RMSE: gp_se (next: mc_dropout x100, difference -0.50 ± 0.50 over 2 shared "
            "splits: within noise)") in lines
    assert "Nadeau & Bengio 2003" in text
    assert "- mc_dropout x100: epochs_multiplier=100, num_samples=100" in text


def test_best_line_says_real_when_beyond_two_standard_errors():
    recs = _pair([-1.0, -2.0, -1.5], [-1.5, -2.4, -2.1])
    table = comparison_table(recs)
    text = comparison_markdown(table, paired_ranking(recs, "test_ll", True), None)
    assert ("Best test LL: a (next: b, difference 0.500 ± 0.058 over 3 shared splits: real)"
            in text.splitlines())
    alone = _rows("d", "a", "test_ll", [-1.0, -2.0])
    text = comparison_markdown(comparison_table(alone), paired_ranking(alone, "test_ll", True),
                               paired_ranking(alone, "rmse", False))
    assert "Best test LL: a (no other variant)" in text and "Best RMSE: – (no records)" in text


def test_report_files_are_written(runs, published_csv, tmp_path):
    out = tmp_path / "compare"
    paths = write_comparison_report([runs["x10"].parent, runs["gp"], runs["x100"]], out,
                                    published_path=published_csv, published_settings=None)
    assert paths == {"report": out / "report.md", "records": out / "records.csv",
                     "ranking": out / "ranking.csv"}
    assert paths["report"].read_text(encoding="utf-8") == _markdown(runs, published_csv)
    records = pd.read_csv(paths["records"])
    assert {"variant", "source_file"} <= set(records.columns) and len(records) == 22
    ranking = pd.read_csv(paths["ranking"])
    assert ranking["metric"].tolist() == ["test_ll"] * 3 + ["rmse"] * 3
    assert not list(out.glob(".tmp-*"))  # atomic writes leave no temporary files


def test_the_report_shows_the_chosen_published_settings(runs, tmp_path):
    """By default only the rows of SHOWN_PUBLISHED_SETTINGS of the packaged file appear (one
    per setting and metric for Boston); ``None`` shows every version of the file."""
    out = tmp_path / "shown"
    text = write_comparison_report([runs["x10"].parent], out)["report"].read_text()
    shown = [line for line in text.splitlines() if line.startswith("| mc_dropout | x")]
    assert {line.split(" | ")[1] for line in shown} <= set(SHOWN_PUBLISHED_SETTINGS)
    assert "readme SD version" not in text and "arXiv v6 Table 1" in text
    text = write_comparison_report([runs["x10"].parent], out,
                                   published_settings=None)["report"].read_text()
    assert "readme SD version" in text
