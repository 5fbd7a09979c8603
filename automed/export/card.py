"""The model card (markdown) of an exported model: data, plan, CV metrics, postprocessing, inference settings and
their cost, export parity and latency. Written into the bundle as ``MODEL_CARD.md`` and set as the registered model
version's description."""

from __future__ import annotations

import math
from pathlib import Path, PureWindowsPath
from typing import Any

from automed.artifacts import read_json
from automed.errors import ArtifactError
from automed.infer.ensemble import EnsemblePredictor
from automed.infer.predictor import Predictor
from automed.records import fits, read_cv_summary, read_keyed, read_pair, shown
from automed.runtime.postprocess import describe
from automed.select.inference_cost import mirror_label
from automed.train.meta import applied_choice, read_meta
from automed.workdir import ALL_DATA, WorkDir


def tta_words(predictor: Any) -> str:
    """``off``, or ``on`` with the mirror set (a Predictor or ImagePredictor)."""
    if not predictor.tta:
        return "off"
    return "on (the even half of the mirrorings)" if predictor.mirrors == "even" else "on (all mirrorings)"


def _f(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


INTENDED_USE = [
    "",
    "## Intended use",
    "",
    "Research use on images like the training data (same modality, acquisition and population). Not a medical "
    "device; check it on local data before relying on it. Its cross-validation numbers describe the training "
    "cases only.",
]


def model_card(predictor: Predictor, report: dict[str, Any], workdir: Path | None) -> str:
    plan, cfg = predictor.plan, predictor.cfg
    lines = [f"# {plan.dataset_name}: automed {predictor.configuration} model", ""]
    choice: dict[str, Any] = {}  # what `automed select` chose for this training (inference.json)
    applied = applied_choice(WorkDir(workdir)) if workdir is not None else None
    if applied is not None:
        choice = applied.model_dump(mode="json")
    fp_file = workdir / "fingerprint.json" if workdir is not None else None
    lines += ["## Data", ""]
    if fp_file is not None and fp_file.is_file():
        fp = _card_fingerprint(fp_file)
        mods = ", ".join(str(c.get("modality", "?")) for c in fp.get("channels", []))
        lines += [
            f"- {fp['n_cases']} training cases, {fp['n_channels']} channel(s) ({mods}), task {fp['task_type']}",
            f"- median spacing {fp['median_spacing']} mm, median shape after crop {fp['median_shape_after_crop']}",
            f"- fingerprint hash `{fp['hash']}`",
        ]
    lines += [
        f"- labels: {', '.join(f'{k} = {v}' for k, v in sorted(plan.labels.items(), key=lambda kv: int(kv[0])))}",
        "",
    ]
    net = cfg.network
    lines += [
        "## Plan",
        "",
        f"- configuration {predictor.configuration}: spacing {cfg.spacing}, patch {predictor.patch}, batch {cfg.batch_size}",
        f"- network {net.architecture}, {net.n_stages} stages, features {net.features_per_stage}",
        f"- normalization: {', '.join(f'channel {n.channel}: {n.scheme}' for n in cfg.normalization)}",
        "",
    ]
    lines += _all_data_lines(workdir)
    summary = WorkDir(workdir).cv_summary if workdir is not None else None
    if summary is not None and summary.is_file():
        cv = read_cv_summary(summary)
        lines += [
            "## Cross-validation (before postprocessing)",
            "",
            "| label | Dice | HD95 mm | NSD | cases scored (both empty) |",
            "|---|---|---|---|---|",
        ]
        for lab, m in cv["mean"].items():
            scored = f"{m['n_cases'] - m.get('n_both_empty', 0)} ({m.get('n_both_empty', 0)})"
            lines.append(
                f"| {cv['label_names'].get(lab, lab)} | {_f(m['dice'])} | {_f(m['hd95'], 2)} | {_f(m['nsd'], 3)} | {scored} |"
            )
        fg = cv["foreground_mean"]
        lines += [
            f"| foreground mean | {_f(fg['dice'])} | {_f(fg['hd95'], 2)} | {_f(fg['nsd'], 3)} | |",
            "",
            "A label absent from both the reference and the prediction of a case is undefined there: left out of its "
            "mean and counted as both empty; n/a: no case defines it.",
            "",
        ]
    lines += [*_postprocessing_lines(predictor.postprocessing), "", "## Inference", ""]
    lines += [
        f"- {len(predictor.models)} fold network(s), mirror TTA {tta_words(predictor)}, window step {predictor.step}"
    ]
    cost = choice.get("inference_cost")
    if cost:
        lines += ["", "| TTA mirrors | step | Dice (fold 0, CV) | s/case |", "|---|---|---|---|"]
        lines += [
            f"| {mirror_label(r)} | {r['step']} | {_f(r['dice'])} | {r['seconds_per_case']:.2f} |"
            for r in cost["table"]["settings"]
        ]
        lines += ["", f"Choice: {cost['choice']['reason']}."]
    return "\n".join(lines + _export_lines(report) + INTENDED_USE) + "\n"


def _all_data_lines(workdir: Path | None) -> list[str]:
    """What an all-data model (``--folds all``) rests on: no CV of its own, the score it inherited, if any."""
    model = WorkDir(workdir).model if workdir is not None else None
    if model is None or not model.is_file():
        return []
    meta = read_meta(model)
    if ALL_DATA not in meta.folds:
        return []
    evidence = (
        f"the cross-validation it was trained after (`--cv`: the same plan and model): CV score {_f(meta.cv_score)}"
        if meta.cv_score is not None
        else "none: trained without `--cv`, so no measured score stands behind it"
    )
    return [
        "## Training",
        "",
        "- one model trained on every case (`--folds all`, nnU-Net's fold all): no validation fold, no "
        "cross-validation of its own",
        f"- evidence: {evidence}",
        "",
    ]


def _postprocessing_lines(post: list[dict[str, Any]]) -> list[str]:
    return ["## Postprocessing", ""] + (
        [f"- {describe(s)}" for s in post] or ["- none (chosen on CV: no step helped)"]
    )


def _export_lines(report: dict[str, Any]) -> list[str]:
    if "parity" not in report:
        return []
    lines = [
        "",
        "## Export",
        "",
        f"Parity on case `{report['parity_case']}` (full prediction vs torch float32):",
        "",
        "| runtime | max abs prob diff | Dice vs torch | passed |",
        "|---|---|---|---|",
    ]
    for name, p in report["parity"].items():
        lines.append(f"| {name} | {p['max_abs_prob']:.2e} | {p['dice_vs_torch']:.4f} | {p['passed']} |")
    lines += ["", "| runtime | seconds per case |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report["latency_seconds"].items()]
    lines += ["", report["latency_note"] + ". OpenVINO weights FP32; runtime precision in preprocess.json."]
    return lines


def member_name(member: dict[str, Any]) -> str:
    """A pair member's training by its folder's name (a bundle written before names were recorded: the name of the
    absolute path it recorded), never a path: a parent folder may name a person."""
    return str(member.get("name") or PureWindowsPath(member.get("workdir", "?")).name)


def pair_card(predictor: EnsemblePredictor, report: dict[str, Any], select_dir: Path | None) -> str:
    """The card of a pair chosen by ``automed select``: its members, the CV evidence (from the selection folder,
    when given), postprocessing and export."""
    plan = predictor.plan
    ens_file = select_dir / "model_bundle" / "ensemble.json" if select_dir is not None else None
    ens = (
        read_pair(ens_file)
        if ens_file is not None and ens_file.is_file()
        else {"members": [{"name": "?", "configuration": p.configuration} for p in predictor.members]}
    )
    lines = [f"# {plan.dataset_name}: automed ensemble of {len(predictor.members)} trainings", ""]
    lines += [
        f"- labels: {', '.join(f'{k} = {v}' for k, v in sorted(plan.labels.items(), key=lambda kv: int(kv[0])))}",
        "- prediction: the mean of the members' class probabilities in the input geometry, then the argmax and the "
        "pair's postprocessing (what selection measured on CV)",
        "",
        "## Members",
        "",
        "| member | work dir | configuration | patch | folds | CV Dice (foreground mean) |",
        "|---|---|---|---|---|---|",
    ]
    for i, (m, p) in enumerate(zip(ens["members"], predictor.members, strict=False)):
        lines.append(
            f"| {i} | `{member_name(m)}` | {m.get('configuration', '?')} | {p.patch} | {len(p.models)} | "
            f"{_f(m.get('cv_score'))} |"
        )
    sel_file = WorkDir(select_dir).selection if select_dir is not None else None
    if sel_file is not None and sel_file.is_file():
        sel = _card_selection(sel_file)
        lines += [
            "",
            "## Selection on cross-validation",
            "",
            "| candidate | CV Dice (foreground mean) |",
            "|---|---|",
        ]
        lines += [f"| {row['candidate']} | {_f(row['foreground_mean'])} |" for row in sel["candidates"]]
        lines += [
            "",
            f"Chosen: {sel['chosen']['candidate']}; CV Dice after postprocessing "
            f"{_f(sel['cv_dice_final']['foreground_mean'])}.",
        ]
    lines += ["", *_postprocessing_lines(predictor.postprocessing), "", "## Inference", ""]
    lines += [f"- mirror TTA {tta_words(predictor.members[0])}, window step {predictor.members[0].step}"]
    return "\n".join(lines + _export_lines(report) + INTENDED_USE) + "\n"


# what a card shows of fingerprint.json: each key's type and, in words, what it is
_FINGERPRINT_KEYS: tuple[tuple[str, Any, str], ...] = (
    ("n_cases", int, "the training cases, a whole number"),
    ("n_channels", int, "the channels, a whole number"),
    ("task_type", str, "the task, text"),
    ("median_spacing", list[float], "a list of numbers"),
    ("median_shape_after_crop", list[int], "a list of whole numbers"),
    ("hash", str, "the fingerprint's hash, text"),
    ("channels", list[dict[str, Any]], "an object per channel"),
)


def _card_fingerprint(path: Path) -> dict[str, Any]:
    """The training's ``fingerprint.json`` as its card shows it; a damaged one is refused naming the file, each rule,
    the value and the fix (it had crashed export with a bare JSONDecodeError or KeyError)."""
    fix = "put back the fingerprint.json automed wrote, or delete it and re-run the training (it is written anew)"
    return read_keyed(path, _FINGERPRINT_KEYS, fix, needed_by=" for the model card")


def _card_selection(path: Path) -> dict[str, Any]:
    """A pair's ``selection.json`` as its card shows it: its candidates (each with its CV Dice), the chosen one and
    the CV Dice after postprocessing. A damaged one is refused naming the file, the rule, the value and the fix (it
    had crashed export with a bare JSONDecodeError, KeyError or TypeError)."""
    fix = "run automed select again into this folder (-o), or put back the selection.json it wrote"
    sel = read_json(path, what="selection.json", damaged_fix=fix)
    if not fits(dict[str, Any], sel):
        raise ArtifactError.single(path, "selection.json must be a JSON object", shown(sel), fix)
    for key, ok, rule in (
        ("candidates", _candidate_rows, "a list of rows with candidate and foreground_mean"),
        ("chosen", lambda v: fits(dict[str, Any], v) and "candidate" in v, "an object naming its candidate"),
        ("cv_dice_final", lambda v: fits(dict[str, Any], v) and _number(v, "foreground_mean"),
         "an object holding foreground_mean (a number)"),
    ):  # fmt: skip
        if not ok(sel.get(key)):
            found = shown(sel[key]) if key in sel else "none"
            raise ArtifactError.single(path, f"selection.json's {key} must be {rule}", found, fix)
    result: dict[str, Any] = sel
    return result


def _candidate_rows(rows: Any) -> bool:
    return fits(list[dict[str, Any]], rows) and all(
        "candidate" in r and _number(r, "foreground_mean") for r in rows
    )


def _number(row: dict[str, Any], key: str) -> bool:
    """Whether ``row`` holds ``key``, a number or null (a Dice undefined on every case)."""
    return key in row and fits(float | None, row[key])
