"""What the numbers say: methods with identical test results, the findings table and its few sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fakerun import make_fake_run
from mtpkdot.report import write_report
from mtpkdot.report.findings import findings_sentences, findings_table, identical_results
from mtpkdot.report.tables import comparisons, parse_markdown_tables


def summary_from(values: dict[str, list[float]], seeds=(0,)) -> pd.DataFrame:
    rows = []
    n = len(next(iter(values.values())))
    for i in range(n):
        for method, vals in values.items():
            rows.append({"seed": seeds[i % len(seeds)], "fold": i, "method": method, "accuracy": vals[i]})
    return pd.DataFrame(rows)


def _corrected_p(d: np.ndarray, ratio: float) -> float:
    """Independent re-derivation: t = mean / sqrt((1/J + n2/n1) s^2), two-sided p from t(J - 1)."""
    from scipy.stats import t as student_t

    J = len(d)
    t = d.mean() / np.sqrt((1 / J + ratio) * d.var(ddof=1))
    return float(2 * student_t.sf(abs(t), J - 1))


def test_identical_results_are_grouped_under_the_first_method():
    s = summary_from(
        {
            "lower_bound": [60, 61, 62],
            "none": [68.25, 70, 71],
            "cosine": [68.25, 70, 71],
            "mse": [68.25, 70, 71],
            "pkdot": [68.25, 70, 71.5],  # one fold differs: not identical
            "mtpkdot": [69, 70, 72],
            "teacher": [80, 81, 82],
        }
    )
    groups = identical_results(s)
    assert [(g.reference, g.methods, g.cells) for g in groups] == [("none", ("cosine", "mse"), 3)]


def test_identical_means_every_metric_and_every_fold():
    rows = []
    for fold in range(3):
        for m in ("none", "pkdot"):
            arousal = 0.5 + 0.01 * fold + (0.001 if m == "pkdot" and fold == 2 else 0.0)
            rows.append({"seed": 0, "fold": fold, "method": m, "ccc_valence": 0.4, "ccc_arousal": arousal})
    assert identical_results(pd.DataFrame(rows)) == []
    # a method missing on one fold is not identical either, even where the others agree
    s = summary_from({"none": [70, 71, 72], "kl": [70, 71, 72]})
    assert len(identical_results(s)) == 1
    assert identical_results(s[~((s.method == "kl") & (s.fold == 2))]) == []


@pytest.fixture(scope="module")
def same_run(tmp_path_factory):
    """The demo's picture: four students with exactly the test results of `none` in every fold."""
    path = make_fake_run(
        tmp_path_factory.mktemp("runs") / "same", seeds=(0,), folds=3, snapshots=False, tsne=False
    )
    summary = pd.read_csv(path / "summary.csv")
    none = summary[summary.method == "none"].set_index(["seed", "fold"])["accuracy"]
    for m in ("cosine", "mse", "kl", "pkdot"):
        rows = summary.method == m
        summary.loc[rows, "accuracy"] = [
            none[(s, f)] for s, f in zip(summary.seed[rows], summary.fold[rows], strict=True)
        ]
    summary.to_csv(path / "summary.csv", index=False)
    write_report(path)
    return path


def test_report_flags_methods_with_identical_results_and_why(same_run):
    md = (same_run / "report.md").read_text()
    assert (
        "**Identical test results:** cosine, mse, kl and pkdot made the same test results as none in every "
        "fold (3 (seed, fold) results; identical metrics" in md
    )
    assert "keeps no per-sample test predictions" in md
    assert "the distillation term changed no test result (a head on frozen features" in md
    assert "few epochs (`student.epochs` = 4)" in md
    assert "no test possible" not in md.split("### What the numbers say")[1].split("## Figures")[0]
    table = next(t for t in parse_markdown_tables(md) if t and "Δ vs none [95 % CI]" in t[0])
    cells = {r["Method"]: r for r in table}
    for m in ("cosine", "mse", "kl", "pkdot"):
        assert cells[m]["Δ vs none [95 % CI]"] == "identical"
        assert cells[m]["Δ vs lower_bound [95 % CI]"] != "identical"
    assert cells["mtpkdot"]["Δ vs none [95 % CI]"] != "identical"


def test_findings_table_has_one_row_per_method_with_both_references():
    s = summary_from(
        {
            "lower_bound": [69, 70, 71, 72, 73, 73],
            "none": [70, 71, 72, 73, 74, 75],
            "cosine": [69, 70, 71, 72, 73, 76],
            "pkdot": [72, 73, 74, 75, 76, 77],
            "teacher": [80, 81, 82, 83, 84, 85],
        }
    )
    headers, rows = findings_table(s, ratio=0.25)
    assert headers == ["Method", "Mean", "Δ vs lower_bound [95 % CI]", "p", "Δ vs none [95 % CI]", "p"]
    assert [r[0] for r in rows] == ["none", "cosine", "pkdot", "teacher"]
    cosine = dict(zip(["method", "mean", "d_low", "p_low", "d_none", "p_none"], rows[1], strict=True))
    d = np.array([69, 70, 71, 72, 73, 76.0]) - np.array([70, 71, 72, 73, 74, 75.0])
    assert cosine["mean"] == "71.83"
    assert cosine["d_none"].startswith(f"{d.mean():+.2f} [")
    assert cosine["p_none"] == f"p={_corrected_p(d, 0.25):.3f}"
    assert rows[0][4:] == ["-", "-"]  # none against itself
    pkdot_p = comparisons(s, 0.25)[("pkdot", "lower_bound", "accuracy")].p
    assert pkdot_p < 0.05 and rows[2][3].endswith(" *")


def test_findings_are_a_few_sentences_not_one_per_comparison():
    s = summary_from(
        {
            "lower_bound": [69, 70, 71, 72, 73, 74],
            "none": [70, 71, 72, 73, 74, 75],
            "cosine": [70, 71, 72, 73, 74, 76],
            "mse": [70, 71, 72, 73, 74, 74],
            "kl": [69, 71, 72, 73, 74, 75],
            "pkdot": [71, 72, 73, 74, 75, 76],
            "mtpkdot": [72, 73.5, 74, 75.5, 76, 76],
            "teacher": [80, 81, 82, 83, 84, 85],
        }
    )
    text = findings_sentences(s, ratio=0.25)
    assert len(text) == 2
    best, vs_pkdot = text
    # the best student, the share of the gap it closes, measured from the true lower bound:
    # (74.5 - 71.5) / (82.5 - 71.5)
    assert best.startswith(
        "Accuracy (%): the best student, MT-PKDOT (74.50), closes 27 % of the gap between "
    )
    assert "the lower bound (71.50) and the upper bound (82.50)" in best
    assert "vs the lower bound (p" in best and "vs the student without distillation (p" in best
    d = np.array([1, 1.5, 1, 1.5, 1, 0])
    p = _corrected_p(d, 0.25)
    assert vs_pkdot.startswith("Accuracy (%): MT-PKDOT is above PKDOT on this run (74.50 vs 73.50; Δ +1.00 [")
    assert f"p={p:.3f}, significant at the 0.05 level" in vs_pkdot


def test_mtpkdot_below_pkdot_is_said():
    s = summary_from({"none": [70, 71, 72], "pkdot": [72, 73, 74], "mtpkdot": [71, 72, 74]})
    assert any("MT-PKDOT does not beat PKDOT on this run (72.33 vs 73.00" in t for t in findings_sentences(s))


def test_teacher_below_lower_bound_is_said():
    s = summary_from(
        {
            "lower_bound": [70, 71, 72],
            "none": [70, 71, 72.5],
            "mtpkdot": [71, 72, 73],
            "teacher": [69, 70, 71],
        }
    )
    text = findings_sentences(s)
    assert any("the multimodal teacher (70.00) is not above the lower bound" in t for t in text)
    assert not any("closes" in t for t in text)


def test_older_run_without_lower_bound_says_so_and_measures_from_none():
    s = summary_from({"none": [70, 71, 72], "mtpkdot": [71, 72.5, 73], "teacher": [80, 81, 82]})
    text = findings_sentences(s)
    assert any("no `lower_bound` row" in t for t in text)
    assert any("gap between the student without distillation (71.00)" in t for t in text)
    headers, rows = findings_table(s)
    assert headers == ["Method", "Mean", "Δ vs none [95 % CI]", "p"]
    assert [r[0] for r in rows] == ["mtpkdot", "teacher"]


def test_regression_findings_per_target():
    rng = np.random.default_rng(0)
    rows = []
    for fold in range(5):
        for m, shift in (("none", 0.0), ("mtpkdot", -0.05), ("teacher", 0.2)):
            rows.append(
                {
                    "seed": 0,
                    "fold": fold,
                    "method": m,
                    "ccc_valence": 0.4 + shift + rng.normal(0, 0.01),
                    "ccc_arousal": 0.5 - shift + rng.normal(0, 0.01),
                    "ccc_mean": 0.0,
                }
            )
    s = pd.DataFrame(rows)
    headers, trows = findings_table(s)
    assert headers[:3] == ["Method", "Metric", "Mean"]
    cells = {(r[0], r[1]): r[3] for r in trows}
    assert cells[("mtpkdot", "CCC valence")].startswith("-0.0")
    assert cells[("mtpkdot", "CCC arousal")].startswith("+0.0")
    text = findings_sentences(s)[1:]  # after the note that the run has no lower bound
    assert text[0].startswith("CCC valence: the best student, MT-PKDOT")
    assert text[1].startswith("CCC arousal: the best student, MT-PKDOT")
    assert text[2].startswith("CCC arousal: the multimodal teacher")  # 0.30 against 0.50
