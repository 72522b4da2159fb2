"""A report built from a small fake run directory (layout of docs/internals.md, numbers from a seeded RNG)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from fakerun import make_fake_run
from mtpkdot.layout import RunLayout
from mtpkdot.report import write_report
from mtpkdot.report.tables import DECIMALS, parse_markdown_tables, parse_mean_std

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path) -> None:
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, f"{path}: {img.shape}"
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.01, f"{path} is (nearly) one color"
    # a plot has axes, text and data: many distinct colors, and a fair share of non-background pixels
    packed = (rgb * 255).astype(np.int64) @ np.array([65536, 256, 1])
    assert len(np.unique(packed)) > 20, f"{path} has almost no content"
    assert (rgb.min(axis=1) < 0.9).mean() > 0.01, f"{path} is almost blank"


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


def test_wilcoxon_column_matches_scipy_on_the_same_pairs(run):
    from scipy.stats import wilcoxon

    summary = pd.read_csv(run / "summary.csv")
    wide = summary.pivot_table(index=["seed", "fold"], columns="method", values="accuracy")
    rows = _table_with((run / "report.md").read_text(), "Wilcoxon vs lower bound")
    checked = 0
    for r in rows:
        for ref, col in (("none", "Wilcoxon vs lower bound"), ("pkdot", "Wilcoxon vs PKDOT")):
            if r["Method"] == ref:
                assert r[col] == "—"
                continue
            expected = wilcoxon(wide[r["Method"]], wide[ref], zero_method="wilcox", alternative="two-sided")
            m = re.fullmatch(r"p=(\S+) \(n=(\d+)\)", r[col])
            assert m, r[col]
            assert int(m.group(2)) == len(wide)
            assert float(m.group(1)) == pytest.approx(expected.pvalue, abs=5e-4 + 1e-9)
            checked += 1
    assert checked == 12  # 7 methods x 2 references, minus none-vs-none and pkdot-vs-pkdot


def test_header_states_setup(run):
    md = (run / "report.md").read_text()
    assert "# MT-PKDOT experiment report: exp" in md
    assert "synthetic_biovid" in md and "Prevalent modality" in md and "video" in md
    assert "Privileged modality" in md and "eda" in md
    assert "3 folds" in md and "seeds [0, 1]" in md
    assert "none in two folds" in md


def test_regression_report_has_valence_and_arousal_and_notes(reg_run):
    md = (reg_run / "report.md").read_text()
    assert "CCC valence" in md and "CCC arousal" in md
    assert "not run in this experiment: cosine, mse, kl" in md
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
