"""Semantic segmentation: U-Net-family networks with softmax heads, Dice + cross-entropy with deep supervision,
patches with forced foreground, pseudo Dice per epoch, sliding-window validation with Dice/IoU/HD95/NSD per label and
case (the absent-structure rule of :mod:`automed.evaluate.summary`), the foreground mean Dice as the score, label
maps written in the input geometry, and the largest-component postprocessing decided on a training's own CV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import IterableDataset

from automed.artifacts import write_json_atomic
from automed.data.cases import read_case
from automed.data.dataset import Dataset
from automed.data.io import read_image, write_image_atomic
from automed.evaluate.metrics import case_metrics
from automed.evaluate.summary import metrics_rows, score, summarize, write_summary
from automed.infer.predict_options import checked_step
from automed.infer.predictor import Predictor
from automed.plan.schema import ConfigurationPlan, Plan
from automed.runtime.postprocess import describe
from automed.select.inference_cost import choose, measure_folds, single_model_seconds
from automed.select.selection import Training, select_trainings
from automed.tasks.base import OwnChoice, metric_keys
from automed.train.config import Augmentation, TrainConfig
from automed.train.data import BatchStream, CaseStore, SamplerSpec
from automed.train.losses import DeepSupervisionLoss, build_loss
from automed.train.meta import ModelMeta
from automed.train.networks import segmentation_network
from automed.workdir import WorkDir

if TYPE_CHECKING:
    import pandas as pd

    from automed.data.io import Geometry
    from automed.export.export import ExportResult
    from automed.parallel import Stages
    from automed.tasks.base import Selected


class PseudoDice:
    """(TP, FP, FN) per class of the arg-max against the target, summed over the epoch's validation patches."""

    def __init__(self, n_classes: int) -> None:
        self.counts = np.zeros((n_classes, 3))

    def add(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        pred = logits.argmax(1)
        t = target[:, 0]
        for k in range(1, len(self.counts)):
            p, r = pred == k, t == k
            self.counts[k] += [float((p & r).sum()), float((p & ~r).sum()), float((~p & r).sum())]

    def result(self) -> tuple[list[float], float]:
        """Pseudo Dice per foreground class and their mean. A class absent from every patch and never predicted has
        none (NaN, as in nnU-Net); the mean is over the classes that have one (NaN when none has)."""
        tp, fp, fn = self.counts[:, 0], self.counts[:, 1], self.counts[:, 2]
        dice = [
            float(2 * tp[k] / (2 * tp[k] + fp[k] + fn[k])) if (tp[k] + fp[k] + fn[k]) > 0 else float("nan")
            for k in range(1, len(self.counts))
        ]
        defined = [d for d in dice if not np.isnan(d)]
        return dice, float(np.mean(defined)) if defined else float("nan")


class Segmentation:
    name = "segmentation"
    score_name = "cv_dice_fg_mean"
    epoch_metric = "pseudo_dice"
    epoch_label = "pseudo-Dice"
    image_level = False
    ignored_settings: tuple[str, ...] = ()
    links_export = True
    summary_figures_title = ""

    def build_network(self, plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig) -> torch.nn.Module:
        return segmentation_network(cfg_plan, config)

    def build_loss(self, plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig) -> DeepSupervisionLoss:
        return build_loss(config.loss, cfg_plan.batch_dice, cfg_plan.network.strides)

    def augmentation(self, plan: Plan, config: TrainConfig) -> Augmentation:
        return config.augmentation

    def batches(
        self,
        plan: Plan,
        store: CaseStore,
        case_ids: list[str],
        spec: SamplerSpec,
        n_batches: int,
        seed: tuple[int, ...],
    ) -> IterableDataset[tuple[torch.Tensor, torch.Tensor]]:
        return BatchStream(store, case_ids, spec, n_batches, seed)

    def epoch_scorer(self, plan: Plan, n_classes: int) -> PseudoDice:
        return PseudoDice(n_classes)

    def epoch_names(self, plan: Plan) -> list[str]:
        values = sorted(int(k) for k in plan.labels)
        return metric_keys([plan.labels[str(v)] for v in values if v != 0])

    def validate(
        self,
        workdir: Path,
        plan: Plan,
        config: TrainConfig,
        fold: int,
        ds: Dataset,
        val_ids: list[str],
        *,
        device: str | None,
        tta: bool,
        mirrors: str = "all",
    ) -> list[dict[str, Any]]:
        """Sliding-window prediction of each validation case, label map and probabilities kept for selection,
        metrics in the original geometry."""
        pred = Predictor.from_folds(workdir, plan, config, [fold], device=device, tta=tta, mirrors=mirrors)
        out = WorkDir(workdir).fold(config.configuration, fold) / "validation"
        out.mkdir(exist_ok=True)
        names = {int(k): v for k, v in plan.labels.items() if int(k) != 0}
        rows: list[dict[str, Any]] = []
        by_id = {c.case_id: c for c in ds.cases}
        for cid in val_ids:
            cd = read_case(by_id[cid], ds.images_are_4d)
            res = pred.predict_arrays(cd.channels, cd.geometry, probabilities=True)
            # under final names only when whole: a run killed here leaves no truncated file for select to read
            write_image_atomic(res.labels, cd.geometry, out / f"{cid}.nii.gz")
            assert res.probabilities is not None and cd.label is not None
            tmp = out / f".{cid}.partial.npz"
            np.savez_compressed(tmp, probabilities=res.probabilities.astype(np.float16))
            tmp.replace(out / f"{cid}.npz")
            per = case_metrics(cd.label, res.labels, sorted(names), cd.geometry.spacing_zyx)
            rows += metrics_rows(cid, fold, per, names)
        return rows

    def fold_figures(
        self,
        folder: Path,
        rows: list[dict[str, Any]],
        ds: Dataset,
        overlay_ids: list[str],
        names: dict[str, str],
    ) -> list[tuple[str, Figure]]:
        """Validation overlays of ``overlay_ids`` (opt-in: they show patient images)."""
        from automed.train.plots import overlay_figure

        by_id = {c.case_id: c for c in ds.cases}
        out = []
        for cid in overlay_ids:
            cd = read_case(by_id[cid], ds.images_are_4d)
            pred_arrs, _ = read_image(folder / "validation" / f"{cid}.nii.gz")
            assert cd.label is not None
            out.append(
                (f"overlays/{cid}.png", overlay_figure(cd.channels[0], cd.label, pred_arrs[0], names[cid]))
            )
        return out

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return summarize(rows)

    def write_summary(self, rows: list[dict[str, Any]], csv_path: Path, json_path: Path) -> dict[str, Any]:
        return write_summary(rows, csv_path, json_path)

    def score(self, summary: dict[str, Any]) -> float:
        return score(summary["foreground_mean"]["dice"])

    def summary_metrics(self, summary: dict[str, Any]) -> dict[str, float | None]:
        fg = summary["foreground_mean"]
        out: dict[str, float | None] = {
            self.score_name: fg["dice"],
            "cv_hd95_fg_mean": fg["hd95"],
            "cv_nsd_fg_mean": fg["nsd"],
        }
        means = summary["mean"]
        keys = metric_keys([str(summary["label_names"].get(lab, lab)) for lab in means])
        for nm, entry in zip(keys, means.values(), strict=True):
            out[f"cv_dice_{nm}"] = entry["dice"]
            out[f"cv_hd95_{nm}"] = entry["hd95"]
            out[f"cv_cases_both_empty_{nm}"] = entry["n_both_empty"]  # cases where the label is undefined
        return out

    def own_choice(
        self,
        workdir: Path,
        plan: Plan,
        config: TrainConfig,
        folds: list[int],
        dataset: str,
        out: Path,
        latency_cap: bool = True,
        *,
        rows: list[dict[str, Any]],
        tta: bool,
        mirrors: str = "all",
        deadline: float | None = None,
    ) -> OwnChoice:
        """Postprocessing (a class bias, largest components), each step kept only if it helps on this training's own
        CV; with several folds and ``latency_cap``, the most accurate (TTA, step, folds) that predicts a case in no more time
        than one network with nnU-Net's default inference (measured on fold 0's validation cases)."""
        own = Training.of(workdir, config.configuration, folds, sorted(int(k) for k in plan.labels), dataset)
        sel = select_trainings([own], out)
        metrics = {"cv_dice_fg_mean_postprocessed": sel["cv_dice_final"]["foreground_mean"]}
        tags = {"postprocessing": "; ".join(describe(s) for s in sel["postprocessing"]) or "none"}
        inference = None
        if latency_cap and len(folds) > 1:
            table = measure_folds(
                workdir,
                plan,
                config,
                folds,
                dataset,
                sel["postprocessing"],
                mirrors=mirrors,
                deadline=deadline,
            )
            cap = single_model_seconds(table)
            choice = choose(table, len(folds), cap)
            choice["reason"] = (
                f"{choice['reason']} (one network with every mirroring at step 0.5, nnU-Net's single-fold default, "
                f"measured here; --full-ensemble keeps all {len(folds)} folds with TTA)"
            )
            write_json_atomic(WorkDir(out).root / "inference_cost.json", {"table": table, "choice": choice})
            inference = {
                "tta": choice["tta"],
                "mirrors": choice["mirrors"],
                "step": choice["step"],
                "folds": folds[: choice["folds"]],
            }
            metrics["expected_seconds_per_case"] = choice["expected_seconds_per_case"]
            tags["inference"] = (
                f"{choice['folds']} fold(s), tta {choice['tta']} ({choice['mirrors']} mirrors), "
                f"step {choice['step']}: " + choice["reason"]
            )
        return OwnChoice(sel["postprocessing"], metrics, tags, WorkDir(out).selection, inference)

    def summary_figures(
        self, rows: list[dict[str, Any]], summary: dict[str, Any]
    ) -> list[tuple[str, Figure]]:
        return []

    def summarizable(self, rows: list[dict[str, Any]]) -> bool:
        return "dice" in rows[0]

    def case_outcomes(self, table: pd.DataFrame) -> pd.DataFrame:
        return table  # Dice (and the distances) per case and structure already

    def paired_tests(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        """Wilcoxon signed-rank on Dice per structure."""
        from automed.evaluate.report import paired_tests

        return paired_tests(table)

    def load_predictor(
        self,
        workdir: Path,
        device: str | None,
        *,
        folds: list[int] | None = None,
        step: float | None = None,
    ) -> Predictor:
        """A cascade's first stage predicts with the same ``folds`` but keeps its own step."""
        own_step = {} if checked_step(step, workdir) is None else {"step": step}
        return Predictor.from_workdir(workdir, device=device, folds=folds, **own_step)

    def bundle_predictor(
        self,
        plan: Plan,
        meta: ModelMeta,
        weights: list[Path],
        device: str | None,
        previous: Any = None,
    ) -> Predictor:
        inf = meta.inference
        return Predictor.from_checkpoints(
            plan,
            meta.config,
            weights,
            previous=previous,
            device=device,
            step=inf.step,
            tta=inf.tta,
            mirrors=inf.mirrors,
            whole_image_factor=inf.whole_image_factor,
            postprocessing=inf.postprocessing,
        )

    def ensemble_predictor(self, members: list[Any], postprocessing: list[dict[str, Any]]) -> Any:
        from automed.infer.ensemble import EnsemblePredictor

        return EnsemblePredictor(members, postprocessing)

    def export(
        self,
        predictor: Any,
        source: str | Path,
        out: Path,
        formats: list[str],
        sample: tuple[str, np.ndarray, Geometry] | None,
        *,
        ov_precision: str,
        repeats: int,
        step: Callable[[str], None],
    ) -> ExportResult:
        from automed.export.export import export_predictor
        from automed.export.link import exported_folds

        return export_predictor(
            predictor,
            out,
            formats,
            sample,
            ov_precision=ov_precision,
            repeats=repeats,
            step=step,
            folds=exported_folds(source),
        )

    def model_card(self, predictor: Any, report: dict[str, Any], workdir: Path | None) -> str:
        """A pair's card names its members and the pair's own postprocessing."""
        from automed.export.card import model_card, pair_card
        from automed.infer.ensemble import EnsemblePredictor

        if isinstance(predictor, EnsemblePredictor):
            return pair_card(predictor, report, workdir)
        return model_card(predictor, report, workdir)

    def select(
        self,
        workdirs: list[Path],
        out: Path,
        *,
        inference: bool,
        latency_target: float | None,
        max_cases: int,
        device: str | None,
        progress: Stages | None = None,
    ) -> Selected:
        from automed.select.segmentation import select_segmentation

        return select_segmentation(
            workdirs,
            out,
            inference=inference,
            latency_target=latency_target,
            max_cases=max_cases,
            device=device,
            progress=progress,
        )
