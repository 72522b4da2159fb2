"""A report built from a small fake run directory (layout of docs/internals.md, numbers from a seeded RNG)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from fakerun import make_fake_run
from helpers import assert_valid_png
from mtpkdot.layout import RunLayout
from mtpkdot.report import write_report
from mtpkdot.report.tables import DECIMALS, parse_markdown_tables, parse_mean_std


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = make_fake_run(tmp_path_factory.mktemp("runs") / "exp", seeds=(0, 1), folds=3, tsne_samples=20)
    write_report(path)
    return path


@pytest.fixture(scope="module")
def reg_run(tmp_path_factory):
    path = make_fake_run(
        tmp_path_factory.mktemp("runs") / "va",
        task="regression",
        methods=("none", "pkdot", "mtpkdot", "teacher"),
        seeds=(0,),
        folds=3,
        snapshots=False,
        tsne=False,
    )
    write_report(path)
    return path


def test_outputs_exist(run):
    for name in ("report.md", "report.html", "results.csv"):
        assert (run / name).is_file()
    names = {p.name for p in (run / "figures").glob("*.png")}
    assert {"fig4_similarity.png", "fig5_tsne.png", "fig6_selection.png", "curves_students.png"} <= names


def test_every_figure_is_a_valid_nontrivial_png(run):
    pngs = sorted((run / "figures").glob("*.png"))
    assert len(pngs) >= 6
    for p in pngs:
        assert_valid_png(p)


def test_markdown_links_every_figure_and_html_embeds_them(run):
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    linked = set(re.findall(r"\]\((figures/[^)]+\.png)\)", md))
    assert linked == {f"figures/{p.name}" for p in (run / "figures").glob("*.png")}
    # self-contained: every image inline, nothing loaded from disk or network
    assert html.count('src="data:image/png;base64,') == len(linked)
    assert "figures/" not in re.sub(r"<figcaption>.*?</figcaption>", "", html)
    assert "<table>" in html and "http" not in html.replace("http-equiv", "")


def _table_with(md: str, header: str) -> list[dict[str, str]]:
    tables = [t for t in parse_markdown_tables(md) if t and header in t[0]]
    assert tables, f"no table with column {header!r}"
    return tables[0]


@pytest.mark.parametrize("which", ["run", "reg_run"])
def test_results_table_parses_back_into_summary_numbers(which, request):
    path = request.getfixturevalue(which)
    summary = pd.read_csv(path / "summary.csv")
    md = (path / "report.md").read_text()
    rows = _table_with(md, "Description")
    metrics = ["accuracy"] if "accuracy" in summary else ["ccc_valence", "ccc_arousal"]
    labels = {"accuracy": "Accuracy (%)", "ccc_valence": "CCC valence", "ccc_arousal": "CCC arousal"}
    assert [r["Method"] for r in rows] == list(dict.fromkeys(summary["method"]))
    for r in rows:
        sub = summary[summary["method"] == r["Method"]]
        assert int(r["n"]) == len(sub)
        for metric in metrics:
            mean, std = parse_mean_std(r[labels[metric]])
            tol = 0.5 * 10 ** -DECIMALS[metric] + 1e-12
            assert abs(mean - sub[metric].mean()) <= tol
            assert abs(std - sub[metric].std(ddof=1)) <= tol


def test_results_csv_matches_summary(run):
    summary = pd.read_csv(run / "summary.csv")
    res = pd.read_csv(run / "results.csv")
    assert list(res.columns) == ["method", "metric", "mean", "std", "n"]
    g = summary.groupby("method")["accuracy"]
    for _, r in res[res["metric"] == "accuracy"].iterrows():
        assert r["mean"] == pytest.approx(g.mean()[r["method"]])
        assert r["std"] == pytest.approx(g.std(ddof=1)[r["method"]])
        assert r["n"] == g.size()[r["method"]]


def test_stats_table_matches_an_independent_computation(run):
    from scipy.stats import t as student_t
    from scipy.stats import wilcoxon

    summary = pd.read_csv(run / "summary.csv")
    wide = summary.pivot_table(index=["seed", "fold"], columns="method", values="accuracy")
    md = (run / "report.md").read_text()
    # the fake run's split.csv: 4 test subjects of 12, 3 samples each -> n2/n1 = 12 / 24
    assert "n2/n1 = 0.500: mean test samples over mean training + validation samples" in md
    rows = _table_with(md, "Corrected t-test")
    pairs = {(r["Method"], r["Reference"]) for r in rows}
    # every method against each reference, each unordered pair once
    assert len(pairs) == len(rows) == 7 + 6 + 5
    for r in rows:
        d = (wide[r["Method"]] - wide[r["Reference"]]).to_numpy()
        J = len(d)
        se = np.sqrt((1 / J + 0.5) * d.var(ddof=1))
        p_t = 2 * student_t.sf(abs(d.mean() / se), J - 1)
        half = student_t.ppf(0.975, J - 1) * se
        m = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", r["Δ [95 % CI]"])
        assert m, r["Δ [95 % CI]"]
        got = [float(v) for v in m.groups()]
        assert got == pytest.approx([d.mean(), d.mean() - half, d.mean() + half], abs=5e-3 + 1e-9)
        per_seed = (wide[r["Method"]] - wide[r["Reference"]]).groupby(level="seed").mean()
        p_w = wilcoxon(per_seed, zero_method="wilcox", alternative="two-sided").pvalue
        for col, expected in (("Corrected t-test", p_t), ("Wilcoxon (seed means)", p_w)):
            cell = r[col]
            if cell == "p<0.001":
                assert expected < 0.001
            else:
                assert float(cell.removeprefix("p=")) == pytest.approx(expected, abs=5e-4 + 1e-9)
        assert r["Pairs (seeds)"] == f"{J} (2)"


def test_report_leads_with_the_corrected_test_and_says_why(run):
    md = (run / "report.md").read_text()
    assert "leads with the corrected resampled t-test of Nadeau & Bengio (2003)" in md
    assert "anti-conservative" in md
    assert "Student without distillation (T-Net hallucination only)" in md
    assert md.index("| lower_bound |") < md.index("| none |") < md.index("| teacher |")


def test_ratio_falls_back_to_the_design_ratio_without_split_files(tmp_path):
    path = make_fake_run(tmp_path / "nosplit", seeds=(0,), folds=4, snapshots=False, tsne=False)
    for p in path.glob("seed*/fold*/split.csv"):
        p.unlink()
    write_report(path)
    md = (path / "report.md").read_text()
    assert "n2/n1 = 0.333: no split.csv found, so 1/(K-1) for K folds per seed" in md


def test_older_run_without_lower_bound_still_reports(tmp_path):
    methods = ("none", "pkdot", "mtpkdot", "teacher")
    path = make_fake_run(
        tmp_path / "old", methods=methods, seeds=(0, 1), folds=3, snapshots=False, tsne=False
    )
    for p in path.glob("folds_seed*.csv"):  # the layout of older runs: one folds.csv for every seed
        p.rename(path / "folds.csv")
    write_report(path)
    md = (path / "report.md").read_text()
    assert "not run in this experiment: lower_bound, cosine, mse, kl" in md
    assert "no `lower_bound` row" in md and "checked on folds.csv" in md
    rows = _table_with(md, "Corrected t-test")
    assert {r["Reference"] for r in rows} == {"none", "pkdot"}


def test_header_states_setup(run):
    md = (run / "report.md").read_text()
    assert "# MT-PKDOT experiment report: exp" in md
    assert "synthetic_biovid" in md and "Prevalent modality" in md and "video" in md
    assert "Privileged modality" in md and "eda" in md
    assert "3 folds" in md and "seeds [0, 1]" in md
    assert "checked on folds_seed0.csv, folds_seed1.csv: 12 subjects, none in two folds" in md


def test_regression_report_has_valence_and_arousal_and_notes(reg_run):
    md = (reg_run / "report.md").read_text()
    assert "CCC valence" in md and "CCC arousal" in md
    assert "not run in this experiment: lower_bound, cosine, mse, kl" in md
    assert "Fig. 4 skipped" in md and "Fig. 5 skipped" in md
    res = pd.read_csv(reg_run / "results.csv")
    assert set(res["metric"]) == {"ccc_valence", "ccc_arousal", "ccc_mean"}


def test_missing_pieces_give_notes_not_crashes(tmp_path):
    path = make_fake_run(tmp_path / "bare", methods=("none", "teacher"), seeds=(0,), folds=2, fold_dirs=False)
    (path / "config.yaml").unlink()
    write_report(path)
    md = (path / "report.md").read_text()
    assert "config.yaml is missing" in md
    assert "Fig. 4 skipped" in md and "Fig. 5 skipped" in md and "Fig. 6 skipped" in md
    assert "training curves skipped" in md
    # only summary.csv missing: still a report
    other = make_fake_run(
        tmp_path / "nosummary", methods=("none", "teacher"), seeds=(0,), folds=2, fold_dirs=False
    )
    (other / "summary.csv").unlink()
    write_report(other)
    assert "summary.csv missing" in (other / "report.md").read_text()


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    from typer.testing import CliRunner

    from mtpkdot.cli import app

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a run")
    with pytest.raises(ValueError, match="not a run directory"):
        write_report(folder)
    res = CliRunner().invoke(app, ["report", str(folder)])
    assert res.exit_code == 2
    assert "not a run directory" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in folder.iterdir()) == ["readme.txt"]  # nothing written


def test_single_result_per_method_has_undefined_std(tmp_path):
    path = make_fake_run(tmp_path / "one", seeds=(0,), folds=2, fold_dirs=False)
    summary = pd.read_csv(path / "summary.csv")
    summary[summary["fold"] == 1].to_csv(RunLayout(path).summary, index=False)
    write_report(path)
    md = (path / "report.md").read_text()
    rows = _table_with(md, "Description")
    mean, std = parse_mean_std(rows[0]["Accuracy (%)"])
    assert math.isnan(std) and not math.isnan(mean)
    assert "n too small" in md


def test_ratio_comes_from_the_split_files_of_the_summarised_folds(tmp_path):
    from mtpkdot.report.build import ratio_for_run
    from mtpkdot.report.rundir import RunDir
    from mtpkdot.report.tables import read_summary

    path = make_fake_run(tmp_path / "sizes", seeds=(0,), folds=3, snapshots=False, tsne=False)
    # train, val, test per fold; unequal training sizes so that the ratio of means (the estimator) differs
    # from the mean of per-fold ratios, and every subset of folds below gives another value
    sizes = {1: (70, 10, 30), 2: (45, 15, 20), 3: (90, 10, 10)}
    for fold, (tr, va, te) in sizes.items():
        roles = ["train"] * tr + ["val"] * va + ["test"] * te
        split_csv = RunLayout(path).fold(0, fold).split_csv
        pd.DataFrame({"sample_id": range(len(roles)), "role": roles}).to_csv(split_csv, index=False)
    summary = read_summary(path / "summary.csv")
    ratio, source = ratio_for_run(RunDir(path), summary)
    # mean test 20 over mean training + validation 80 (mean of per-fold ratios: 0.269; training alone: 0.293)
    assert ratio == pytest.approx(20 / 80)
    assert "3 folds' split.csv" in source
    # a fold that is not in summary.csv does not count (all three folds give 20 / 80)
    ratio, source = ratio_for_run(RunDir(path), summary[summary["fold"] != 3])
    assert ratio == pytest.approx(25 / 70)
    assert "2 folds' split.csv" in source
    ratio, _ = ratio_for_run(RunDir(path), summary[summary["fold"] != 1])
    assert ratio == pytest.approx(15 / 80)


def test_a_subject_in_two_folds_of_a_partition_is_flagged(tmp_path):
    path = make_fake_run(tmp_path / "leak", seeds=(0, 1), folds=2, fold_dirs=False)
    folds = pd.read_csv(path / "folds_seed1.csv")
    folds.loc[0, "fold"] = 1 - folds.loc[0, "fold"]
    folds.to_csv(path / "folds_seed1.csv", index=False)
    write_report(path)
    assert (
        "WARNING: subjects appear in more than one fold (1 in folds_seed1.csv)"
        in (path / "report.md").read_text()
    )


def test_run_directory_is_shown_relative_to_the_current_folder(tmp_path, monkeypatch):
    path = make_fake_run(tmp_path / "runs" / "rel", seeds=(0,), folds=2, snapshots=False, tsne=False)
    monkeypatch.chdir(tmp_path)
    write_report(path.resolve())
    text = (path / "report.md").read_text()
    assert "**Run directory:** `runs/rel`" in text
    assert str(tmp_path) not in text
