"""Build the report of one run directory: ``report.md``, ``report.html``, ``figures/*.png``, ``results.csv``.

Every piece is optional except the run directory itself: a method that was not run, a fold without
snapshots or a stage without metrics is skipped with a note in the report, never an exception.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtpkdot import layout
from mtpkdot.atomic import atomic_write_csv, atomic_write_text, file_set
from mtpkdot.report import figures as F
from mtpkdot.report.document import Block, Figure, Heading, Note, Table, Text, render_markdown
from mtpkdot.report.findings import (
    findings_sentences,
    findings_table,
    identical_results,
    same_results_sentence,
)
from mtpkdot.report.html import render_html
from mtpkdot.report.prepared import PREPARE_REPORT, data_summary, meta_summary, read_prepare_report
from mtpkdot.report.rundir import FoldDir, RunDir
from mtpkdot.report.selected import fold_selections, gap_frame, validation_at_selection
from mtpkdot.report.stats import ALTERNATIVE, ZERO_METHOD, size_ratio
from mtpkdot.report.tables import (
    METRIC_LABELS,
    aggregate,
    decimals,
    design_ratio,
    fmt,
    known_rows,
    ordered_methods,
    read_summary,
    results_table,
    stats_table,
)

log = logging.getLogger(__name__)

SCHEMES = {
    "kfold": "k-fold cross-validation grouped by subject (no subject in two folds)",
    "loso": "leave-one-subject-out",
    "official": "official train / validation split",
}
FIG4_METHODS = (("mtpkdot", "MT-PKDOT"), ("pkdot", "PKDOT"))


def _get(cfg: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _mtpkdot(cfg: dict[str, Any], key: str) -> Any:
    """An MT-PKDOT option as the run used it: its ``distill.mtpkdot`` section, else the default."""
    from mtpkdot.distill.methods.mtpkdot import MTPKDOTOptions

    if "distill" not in cfg:
        return "?"
    return _get(cfg, f"distill.mtpkdot.{key}", getattr(MTPKDOTOptions(), key))


def _shown(path: Path) -> Path:
    """``path`` relative to the current folder when it lies below it: a report committed with its
    results must not name the folders of the machine that made it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _subject_check(run: RunDir) -> str:
    """Check every persisted partition (``folds_seed<s>.csv`` per seed, or one ``folds.csv``)."""
    paths = run.layout.folds_files()
    if not paths:
        return "no folds file found, subject-wise split not checked"
    leaks, subjects = [], set()
    for p in paths:
        try:
            per_subject = pd.read_csv(p).groupby("subject_id")["fold"].nunique()
        except (KeyError, ValueError, pd.errors.ParserError) as exc:
            return f"{p.name} unreadable ({exc})"
        subjects |= set(per_subject.index)
        if (per_subject > 1).any():
            leaks.append(f"{int((per_subject > 1).sum())} in {p.name}")
    names = ", ".join(p.name for p in paths)
    if leaks:
        return f"WARNING: subjects appear in more than one fold ({'; '.join(leaks)})"
    return f"checked on {names}: {len(subjects)} subjects, none in two folds of a partition"


def _shown_from(run: RunDir, path: Path) -> Path:
    """``path`` relative to the run directory when it lies inside it (the store usually does)."""
    try:
        return path.resolve().relative_to(run.path.resolve())
    except ValueError:
        return _shown(path)


def data_line(run: RunDir, cfg: dict[str, Any]) -> str:
    """What ``prepare`` kept and dropped and why: the store's prepare_report.csv, else the counts of
    the run's copy of the store's meta.json (the store may have been deleted or moved)."""
    store = run.layout.store(_get(cfg, "data.store", None))
    report = read_prepare_report(store / PREPARE_REPORT)
    if report is not None:
        return f"{data_summary(report)} (from `{_shown_from(run, store / PREPARE_REPORT)}`)"
    counts = meta_summary(run.layout.store_meta)
    where = f"no readable {PREPARE_REPORT} in `{_shown_from(run, store)}`"
    if counts is not None:
        return f"{counts} (the reasons are not shown: {where})"
    return f"not recorded ({where}, no {run.layout.store_meta.name})"


def _backbone_line(cfg: dict[str, Any]) -> str:
    """Which student setting was used (frozen or fine-tuned backbone) and where the teacher side's
    training features come from (the stage-1 backbones or cross-fitted ones)."""
    if not cfg:
        return "**Student backbone:** not recorded"
    finetune = _get(cfg, "student.finetune_backbone", False)
    k = _get(cfg, "features.crossfit", 0) or 0
    student = (
        "fine-tuned end to end from the fold's stage-1 backbone (`student.finetune_backbone: true`)"
        if finetune
        else "frozen: the student trains on the cached features of the fold's stage-1 backbone"
    )
    teacher = (
        f"cross-fitted, K = {k} inner folds (`features.crossfit`)"
        if k
        else "from the stage-1 backbones, which saw those subjects"
    )
    return f"**Student backbone:** {student}; teacher-side features of training samples: {teacher}"


def setup_blocks(run: RunDir, cfg: dict[str, Any], summary: pd.DataFrame | None) -> list[Block]:
    """The header a researcher needs before the numbers: data, modalities, protocol, method settings."""
    mods = _get(cfg, "data.modalities", {}) or {}

    def describe(names: list[str]) -> str:
        parts = []
        for m in names:
            spec = mods.get(m, {}) if isinstance(mods, dict) else {}
            kind, backbone = spec.get("kind"), spec.get("backbone")
            extra = ", ".join(str(v) for v in (kind, backbone) if v)
            parts.append(f"{m} ({extra})" if extra else m)
        return ", ".join(parts) or "not recorded"

    scheme = _get(cfg, "protocol.scheme", None)
    seeds = _get(cfg, "seeds", None)
    folds = _get(cfg, "protocol.folds", None)
    if summary is not None and not summary.empty:
        seeds = sorted(summary["seed"].unique().tolist())
        n_folds_done = summary[["seed", "fold"]].drop_duplicates().shape[0]
    else:
        n_folds_done = 0
    low = _get(cfg, "protocol.train_subjects", None)
    items = [
        f"**Run directory:** `{_shown(run.path)}`",
        f"**Dataset:** `{_get(cfg, 'data.dataset', 'not recorded')}`, task `{_get(cfg, 'data.task', '?')}`",
        f"**Data:** {data_line(run, cfg)}",
        f"**Prevalent modality (train and test):** {describe(_get(cfg, 'data.prevalent', []) or [])}",
        f"**Privileged modality (training only):** {describe(_get(cfg, 'data.privileged', []) or [])}",
        f"**Teacher fusion:** `{_get(cfg, 'teacher.fusion', '?')}`",
        f"**Protocol:** {SCHEMES.get(scheme, scheme or 'not recorded')}"
        + (f", {folds} folds" if folds and scheme != "official" else "")
        + f"; seeds {seeds}; {n_folds_done} (seed, fold) results in summary.csv",
        f"**Subject-wise split:** {_subject_check(run)}; validation subjects for model selection: "
        f"{_get(cfg, 'protocol.val_subjects', '?')} of each fold's training subjects; the test fold is used once",
    ]
    if low:
        items.append(f"**Low-data setting:** {low} training subjects per fold")
    items.append(
        f"**Student:** batch size b = {_get(cfg, 'student.batch_size', '?')}, "
        f"epochs {_get(cfg, 'student.epochs', '?')}, anchors k = {_mtpkdot(cfg, 'k')}, "
        f"loss weights alpha/beta/gamma = {_get(cfg, 'distill.alpha', '?')}/{_get(cfg, 'distill.beta', '?')}/"
        f"{_get(cfg, 'distill.gamma', '?')} (Eq. 10), centroid `{_mtpkdot(cfg, 'centroid')}`, "
        f"teacher selection `{_mtpkdot(cfg, 'selection')}`"
    )
    items.append(_backbone_line(cfg))
    if summary is not None and "n_test" in summary.columns:
        per_fold = summary.groupby(["seed", "fold"])["n_test"].max()
        items.append(f"**Test samples per fold:** {int(per_fold.min())} to {int(per_fold.max())}")
    blocks: list[Block] = [Heading("Setup", 2), Text(items=items)]
    if not cfg:
        blocks.append(Note("config.yaml is missing or unreadable: the setup above is incomplete"))
    return blocks


def split_sizes(run: RunDir) -> pd.DataFrame:
    """``seed, fold, n_train, n_test`` from each fold's ``split.csv`` (training counts validation too)."""
    rows = []
    for fd in run.fold_dirs():
        p = fd.split_csv
        if not p.is_file():
            continue
        try:
            roles = pd.read_csv(p, usecols=["role"])["role"].value_counts()
        except (KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue  # the report falls back to the design ratio and says so
        n_train = int(roles.get("train", 0) + roles.get("val", 0))
        if n_train and roles.get("test", 0):
            rows.append({"seed": fd.seed, "fold": fd.fold, "n_train": n_train, "n_test": int(roles["test"])})
    return pd.DataFrame(rows, columns=["seed", "fold", "n_train", "n_test"])


def ratio_for_run(run: RunDir, summary: pd.DataFrame) -> tuple[float, str]:
    """n2 / n1 for the corrected t-test and a sentence saying where it comes from."""
    sizes = split_sizes(run).merge(summary[["seed", "fold"]].drop_duplicates(), on=["seed", "fold"])
    if not sizes.empty:
        ratio = size_ratio(sizes)
        return ratio, (
            f"n2/n1 = {ratio:.3f}: mean test samples over mean training + validation samples of the "
            f"{len(sizes)} folds' split.csv"
        )
    ratio = design_ratio(summary)
    return ratio, (
        f"n2/n1 = {ratio:.3f}: no split.csv found, so 1/(K-1) for K folds per seed (the design ratio)"
    )


def _validation_sizes(run: RunDir) -> str:
    """How many validation subjects and samples each fold selected its epochs on (from split.csv)."""
    subjects, samples = [], []
    for fd in run.fold_dirs():
        try:
            split = pd.read_csv(fd.split_csv)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if "role" not in split.columns:
            continue
        val = split[split["role"] == "val"]
        samples.append(len(val))
        if "subject_id" in split.columns:
            subjects.append(val["subject_id"].nunique())

    def span(values: list[int]) -> str:
        return str(values[0]) if min(values) == max(values) else f"{min(values)} to {max(values)}"

    if not samples:
        return ""
    who = f"{span(subjects)} subject{'s' if max(subjects) > 1 else ''}, " if subjects else ""
    return f" Each fold selected on {who}{span(samples)} validation samples."


def gap_blocks(run: RunDir, summary: pd.DataFrame) -> list[Block]:
    """Validation (selected epoch) and test metric side by side per method: selection on a few validation
    subjects is optimistic, and the gap shows by how much."""
    gaps = gap_frame(summary, validation_at_selection(run, summary))
    if gaps.empty:
        return [
            Note(
                "no stage records a selected epoch with its validation metrics: validation-test gap not shown"
            )
        ]
    several = gaps["metric"].nunique() > 1
    headers = ["Method", *(["Metric"] if several else []), "Validation (selected epoch)", "Test", "Gap", "n"]
    rows = [
        [
            r.method,
            *([METRIC_LABELS.get(r.metric, r.metric)] if several else []),
            fmt(r.validation, r.metric),
            fmt(r.test, r.metric),
            f"{r.gap:+.{decimals(r.metric)}f}",
            str(r.n),
        ]
        for r in gaps.itertuples(index=False)
    ]
    text = (
        "The validation metric of the epoch each stage selected (the checkpoint it tested), next to its "
        "test metric, both averaged over the same (seed, fold) results; gap = validation - test. A "
        "positive gap is the optimism of selecting on few validation subjects: the test column is the "
        f"estimate.{_validation_sizes(run)}"
    )
    return [
        Text(text),
        Table(headers, rows, caption="Validation (selected epoch) and test metric per method"),
    ]


def _same_results_blocks(groups: list, cfg: dict[str, Any]) -> list[Block]:
    return [Text(f"**Identical test results:** {same_results_sentence(g, cfg)}") for g in groups]


def results_blocks(
    summary: pd.DataFrame, run: RunDir | None = None, cfg: dict[str, Any] | None = None
) -> list[Block]:
    headers, rows = results_table(summary)
    groups = identical_results(summary)
    blocks: list[Block] = [
        Heading("Results", 2),
        Text(
            "Mean ± standard deviation (ddof = 1) over every (seed, fold) result; n is the number of such "
            "results. Rows: the lower bound (`lower_bound`: prevalent modalities alone, no T-Net, no "
            "distillation), the student without distillation (`none`: T-Net hallucination only), the "
            "baselines, PKDOT, MT-PKDOT, the upper bound (`teacher`)."
        ),
        Table(headers, rows, caption="Table 1: test results per method"),
    ]
    missing = [m for m in known_rows() if m not in set(summary["method"])]
    if missing:
        blocks.append(Note(f"not run in this experiment: {', '.join(missing)}"))
    blocks += _same_results_blocks(groups, cfg or {})
    if run is not None:
        blocks += gap_blocks(run, summary)
    ratio, source = ratio_for_run(run, summary) if run is not None else (design_ratio(summary), "")
    th, tr = stats_table(summary, ratio)
    fh, fr = findings_table(summary, ratio, groups)
    blocks += [
        Text(
            "Paired comparisons, matched on (seed, fold); each seed is one repetition of the cross-validation "
            "with its own subject partition. The report leads with the corrected resampled t-test of Nadeau & "
            "Bengio (2003) for r x k cross-validation (Bouckaert & Frank 2004): t = mean(d) / sqrt((1/(k r) + "
            "n2/n1) var(d)) with k r - 1 degrees of freedom, because the folds of one repetition (and of "
            "different repetitions) share most of their training subjects, so the k r differences are "
            "correlated and a plain paired t-test or Wilcoxon test over them is anti-conservative (it finds "
            f"differences that are not there). {source}. Δ is the mean paired difference (method minus "
            "reference) with its 95 % interval from the same corrected variance. The Wilcoxon signed-rank "
            f"test (zero_method='{ZERO_METHOD}', alternative='{ALTERNATIVE}') is on the per-seed mean "
            "differences, which are independent; with r seeds it cannot give p below 2/2^r (0.25 for 3 seeds)."
        ),
        Table(
            th,
            tr,
            caption="Table 2: paired tests against the lower bound, the student without distillation and PKDOT",
        ),
        Heading("What the numbers say", 3),
        Table(
            fh,
            fr,
            caption="Findings: each method against the lower bound and the student without distillation "
            "(Δ with its 95 % interval, corrected t-test p; * below 0.05; identical: the same test results "
            "in every fold)",
        ),
        Text(items=findings_sentences(summary, ratio, groups)),
    ]
    return blocks


def _fig4(run: RunDir, out: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Fig. 4: similarity matrices during student training", 3)]
    rows, where = {}, []
    for method, label in FIG4_METHODS:
        stage = layout.student_stage(method)
        fd = run.first_with(f"{stage}/{layout.SNAPSHOTS}")
        if fd is None:
            if method == "mtpkdot":
                blocks.append(Note(f"no {stage}/{layout.SNAPSHOTS} in any fold: {label} row skipped"))
            continue
        try:
            with np.load(fd.stage(stage) / layout.SNAPSHOTS) as z:
                rows[label] = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            blocks.append(Note(f"{fd.stage(stage) / layout.SNAPSHOTS} unreadable ({exc})"))
            continue
        where.append(f"{label}: {fd.label}")
    if not rows:
        return [*blocks, Note("no similarity snapshots in this run (student.snapshots off?): Fig. 4 skipped")]
    path = F.similarity_evolution(rows, out / "fig4_similarity.png")
    blocks.append(
        Figure(
            path,
            "Fig. 4: cosine similarity matrices (b x b, one batch) of the teacher and of the student at 0, 50, 75 "
            f"and 100 % of student training; one color scale per row ({'; '.join(where)}). The closer the "
            "student's block structure is to the teacher's, the more relational knowledge it has taken up.",
        )
    )
    return blocks


def _fig5(run: RunDir, out: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Fig. 5: teacher representations before and after alignment", 3)]
    fd = run.first_with(f"{layout.ADAPTERS}/{layout.TSNE}")
    if fd is None:
        return [*blocks, Note(f"no {layout.ADAPTERS}/{layout.TSNE} in any fold: Fig. 5 skipped")]
    try:
        with np.load(fd.stage(layout.ADAPTERS) / layout.TSNE) as z:
            data = {k: z[k] for k in z.files}
        path, notes = F.teacher_tsne(data, out / "fig5_tsne.png")
    except (OSError, ValueError) as exc:
        return [
            *blocks,
            Note(f"{fd.stage(layout.ADAPTERS) / layout.TSNE} could not be drawn ({exc}): Fig. 5 skipped"),
        ]
    blocks.append(
        Figure(
            path,
            f"Fig. 5: 2-D t-SNE (scikit-learn, random_state 0) of the validation samples' teacher representations, "
            f"{fd.label}: each modality teacher and the joint one, before (left) and after (right) the adapters "
            "align them with the joint representation (Alg. 1, Eq. 1). Top: colored by teacher; bottom: by class, "
            "marker by teacher. Aligned teachers should overlap while classes stay apart.",
        )
    )
    blocks += [Note(n) for n in notes]
    return blocks


def selection_counts(run: RunDir) -> pd.DataFrame:
    """Batches per selected teacher, summed over epochs, one row per (seed, fold) of MT-PKDOT."""
    rows, labels = [], []
    mt = layout.student_stage("mtpkdot")
    fds = [fd for fd in run.fold_dirs() if (fd.stage(mt) / layout.METRICS).is_file()]
    several_seeds = len({fd.seed for fd in fds}) > 1
    for fd in fds:
        df = pd.read_csv(fd.stage(mt) / layout.METRICS)
        sel = [c for c in df.columns if c.startswith("sel_")]
        if not sel:
            continue
        rows.append({c[4:]: float(pd.to_numeric(df[c], errors="coerce").fillna(0).sum()) for c in sel})
        labels.append(f"s{fd.seed} f{fd.fold}" if several_seeds else f"fold {fd.fold}")
    return pd.DataFrame(rows, index=labels).fillna(0.0)


def _fig6(run: RunDir, out: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Fig. 6: which teacher MT-PKDOT selected", 3)]
    counts = selection_counts(run)
    if counts.empty:
        return [*blocks, Note("no sel_<teacher> columns in student_mtpkdot/metrics.csv: Fig. 6 skipped")]
    with_all = pd.concat([counts, counts.sum().to_frame("all").T])
    path = F.teacher_selection(with_all, out / "fig6_selection.png")
    shares = F.selection_shares(with_all)
    blocks.append(
        Figure(
            path,
            "Fig. 6: share of training batches (all epochs) in which each teacher had the lowest task loss and was "
            "selected (Alg. 2), per fold; 'all' pools the folds. Ties go to the joint teacher.",
        )
    )
    headers = ["Fold", *[f"{t} (%)" for t in shares.columns], "batches"]
    rows = [
        [str(i), *[f"{v:.1f}" for v in shares.loc[i]], str(int(with_all.loc[i].sum()))] for i in shares.index
    ]
    blocks.append(Table(headers, rows, caption="Table 3: teacher selection per fold (percent of batches)"))
    pooled = shares.loc["all"]
    if "joint" in pooled.index:
        others = ", ".join(f"{t} {v:.1f} %" for t, v in pooled.items() if t != "joint")
        blocks.append(
            Text(
                f"Over all folds the joint teacher was selected in {pooled['joint']:.1f} % of the batches"
                + (f"; the aligned modality teachers: {others}." if others else ".")
            )
        )
    return blocks


def _stage_groups(names: list[str]) -> list[tuple[str, list[str]]]:
    groups = [
        ("backbones", [n for n in names if n.startswith("backbone_")]),
        ("teacher", [n for n in names if n == "teacher"]),
        ("adapters", [n for n in names if n == "adapters"]),
        ("tnet", [n for n in names if n == "tnet"]),
        ("students", [n for n in names if n.startswith("student_")]),
    ]
    known = {n for _, g in groups for n in g}
    groups += [(n, [n]) for n in names if n not in known]
    return [(g, members) for g, members in groups if members]


def _student_order(names: list[str]) -> list[str]:
    order = {layout.student_stage(m): i for i, m in enumerate(known_rows())}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def _selection_text(selected: dict[str, int], members: list[str]) -> str:
    marked = [f"{m} {selected[m]}" for m in members if m in selected]
    unmarked = [m for m in members if m not in selected]
    text = (
        f" Dashed line: the epoch selected on validation, whose checkpoint was tested ({', '.join(marked)})."
        if marked
        else ""
    )
    if unmarked:
        text += f" No selected epoch recorded (no test.json with best_epoch) for {', '.join(unmarked)}."
    return text


def _curves(run: RunDir, out: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Training curves", 3)]
    fds = [fd for fd in run.fold_dirs() if run.stages(fd)]
    if not fds:
        return [*blocks, Note("no metrics.csv in any stage folder: training curves skipped")]
    fd: FoldDir = fds[0]
    selected = fold_selections(fd, run.stages(fd))
    for group, members in _stage_groups(run.stages(fd)):
        if group == "students":
            members = _student_order(members)
        frames = {}
        for m in members:
            try:
                frames[m] = pd.read_csv(fd.stage(m) / layout.METRICS)
            except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                blocks.append(Note(f"{fd.path}/{m}/metrics.csv unreadable ({exc})"))
        frames = {k: v for k, v in frames.items() if not v.empty}
        if not frames:
            continue
        path = F.training_curves(frames, out / f"curves_{group}.png", f"{group} ({fd.label})", selected)
        blocks.append(
            Figure(
                path,
                title=f"Training curves: {group}",
                caption=f"Training curves of the {group} stage ({fd.label}): every loss term unweighted (left; log scale "
                "when they span orders of magnitude) and the validation metric used for model selection (right), per epoch."
                + _selection_text(selected, list(frames)),
            )
        )
    return blocks


def build_blocks(run: RunDir) -> tuple[list[Block], pd.DataFrame | None]:
    cfg = run.config()
    name = _get(cfg, "name", run.path.name)
    blocks: list[Block] = [Heading(f"MT-PKDOT experiment report: {name}", 1)]
    summary = None
    if run.summary_path.is_file():
        try:
            summary = read_summary(run.summary_path)
        except ValueError as exc:
            blocks.append(Note(str(exc)))
    blocks += setup_blocks(run, cfg, summary)
    if summary is None or summary.empty:
        blocks.append(Note("summary.csv missing or empty: no results table (has any fold finished?)"))
    else:
        blocks += results_blocks(summary, run, cfg)
    out = run.figures
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("fig[4-6]_*.png"), *out.glob("curves_*.png")]:
        stale.unlink()  # our own earlier figures: a figure skipped now must not linger beside the report
    blocks.append(Heading("Figures", 2))
    for part in (_fig4, _fig5, _fig6, _curves):
        try:
            blocks += part(run, out)
        except Exception as exc:  # a broken figure must not cost the user the tables
            log.exception("report figure failed")
            blocks.append(Note(f"{part.__name__[1:]} failed: {type(exc).__name__}: {exc}"))
    return blocks, summary


@file_set()  # report.md, report.html, figures and results.csv: all new or all old
def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html``, ``figures/*.png`` and ``results.csv`` into ``run_dir``.

    Returns the path of ``report.md``. A folder with none of a run's files (``config.yaml``,
    ``summary.csv``, ``seed<s>/fold<k>``) raises a ValueError and nothing is written.
    """
    run = RunDir(run_dir)
    run.layout.check_is_run()
    blocks, summary = build_blocks(run)
    if summary is not None and not summary.empty:
        agg = aggregate(summary)
        agg["method"] = pd.Categorical(agg["method"], ordered_methods(summary), ordered=True)
        atomic_write_csv(agg.sort_values(["method"], kind="stable"), run.layout.results)
    md = run.layout.report_md
    atomic_write_text(md, render_markdown(blocks, run.path))
    title = blocks[0].text if isinstance(blocks[0], Heading) else "report"
    atomic_write_text(run.layout.report_html, render_html(blocks, title))
    return md
