"""``automed demo``: the whole product on synthetic data in a few minutes of CPU.

20 training cases + 2 held-out cases (two channels, labels "large" and "small", 3 mm slices at 1 mm in-plane; three
training cases lack the small structure, as lesions are absent from some cases of real data) ->
``automed train`` within the budget (folds chosen by the budget) -> registered model -> ``automed predict models:/NAME@champion`` on the
held-out cases -> their Dice per label.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from automed.testing.synthetic import LabelLayout, make_dataset

DEMO_SHAPE = (16, 48, 48)
DEMO_SPACING = (3.0, 1.0, 1.0)
DEMO_LABELS = LabelLayout(absent={2: (3, 11, 17)})  # training cases without the small structure


def demo_cases(dest: Path, n_cases: int, seed: int, name: str, labels: LabelLayout | None = None) -> Path:
    """``n_cases`` cases of the demo's generator (shape, spacing, two MR channels, nnU-Net v2 layout), deterministic."""
    return make_dataset(
        dest,
        n_cases=n_cases,
        shape=DEMO_SHAPE,
        spacing=DEMO_SPACING,
        n_channels=2,
        layout="nnunetv2",
        modality="MR",
        seed=seed,
        name=name,
        labels=labels,
    )


def make_demo_data(root: Path) -> tuple[Path, Path]:
    """The training dataset (20 cases) and the held-out cases (2), deterministic."""
    train = root / "data"
    held = root / "heldout"
    if not (train / "dataset.json").is_file():
        demo_cases(train, 20, 7, "AutomedDemo", DEMO_LABELS)
    if not (held / "dataset.json").is_file():
        demo_cases(held, 2, 1007, "AutomedDemoHeldout")
    return train, held


def run_demo(
    output: Path,
    *,
    budget: str = "5m",
    workers: int | None = None,
    show_progress: bool = True,
    console: Console | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    from automed import api
    from automed.data.io import read_image
    from automed.evaluate.metrics import label_metrics

    con = console or Console()
    output = Path(output)
    train_dir, held = make_demo_data(output)
    con.print(f"demo data: {train_dir} (20 cases), held out: {held / 'imagesTr'} (2 cases)")
    earlier = output / "work"
    if (earlier / "fingerprint.json").is_file():  # an earlier demo's training: the demo trains afresh
        con.print(f"replacing the earlier demo's training in {earlier}")
        shutil.rmtree(earlier)
    res = api.train(
        train_dir,
        output / "work",
        budget=budget,  # --folds auto (the default with a budget) decides how many folds it trains well
        workers=workers,
        tracking_uri=tracking_uri,
        show_progress=show_progress,
    )
    con.print(res.folds_reason)
    fg = res.cv_summary["foreground_mean"]
    con.print(f"cross-validation foreground Dice {fg['dice']:.3f} (HD95 {fg['hd95']:.2f} mm)")
    if res.registered is None:
        raise RuntimeError("the demo's training was not registered")
    name = res.registered["name"]
    uri = f"models:/{name}@champion"
    con.print(
        f"registered {name} version {res.registered['version']}; predicting the held-out cases with {uri}"
    )
    # the demo's own predictions of an earlier run are replaced (never a folder of yours)
    preds = api.predict(
        uri,
        held / "imagesTr",
        output / "predictions",
        tracking_uri=tracking_uri,
        show_progress=show_progress,
        overwrite=True,
    )
    t = Table(title="held-out Dice")
    t.add_column("case")
    t.add_column("large")
    t.add_column("small")
    dice: dict[str, dict[str, float]] = {}
    for p in preds:
        cid = p.name[: -len(".nii.gz")]
        ref, geo = read_image(held / "labelsTr" / f"{cid}.nii.gz")
        pred, _ = read_image(p)
        d = {
            n: label_metrics(ref[0] == v, pred[0] == v, geo.spacing_zyx).dice
            for v, n in ((1, "large"), (2, "small"))
        }
        dice[cid] = d
        t.add_row(cid, f"{d['large']:.3f}", f"{d['small']:.3f}")
    con.print(t)
    page = api.report([output / "work"], output / "report", overwrite=True).page
    con.print(f"report of the training (CV per case, curves of every fold, outliers): {page}")
    con.print("open the MLflow UI with: .venv/bin/automed ui   (then http://127.0.0.1:5000)")
    return {
        "dice": dice,
        "registered": res.registered,
        "cv": res.cv_summary,
        "folds_reason": res.folds_reason,
        "report": page,
    }
