"""The registered model: an MLflow pyfunc that carries the plan, the fold weights and the inference settings.

``predict`` takes float32 ``(N, C, z, y, x)`` images and returns int64 ``(N, z, y, x)`` label maps (segmentation) or a
table with ``prediction`` (and ``probability_<class>`` per class) per image (classification, regression). Images are assumed
to be at the spacing given by the ``spacing_z``/``spacing_y``/``spacing_x`` params (default: the dataset's median
spacing) with identity direction; ``automed predict models:/NAME@ALIAS`` instead reads real files and keeps their
geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc.model import PythonModel

from automed.records import read_pair
from automed.workdir import fold_name

ENSEMBLE_FILE = "ensemble.json"
PREVIOUS = "previous"  # a cascade bundle's first stage: a bundle folder of its own
# a bundle's channel names in network order (its dataset's, from the fingerprint, which stays in the work dir): a
# prediction CSV's named channel columns are checked against them
CHANNELS_FILE = "channels.json"


def trained_channel_names(workdir: Path) -> list[str] | None:
    """The channel names a training work dir's dataset declared, in network order; ``None`` without a fingerprint."""
    from automed.fingerprint.schema import Fingerprint
    from automed.workdir import WorkDir

    path = WorkDir(workdir).fingerprint
    if not path.is_file():
        return None
    return [c.declared for c in Fingerprint.load(path).channels]


def write_channel_names(workdir: Path, bundle: Path) -> None:
    """``bundle/channels.json``: the channel names of ``workdir``'s training (none written when it has no
    fingerprint)."""
    from automed.artifacts import write_json_atomic

    names = trained_channel_names(workdir)
    if names is not None:
        write_json_atomic(bundle / CHANNELS_FILE, {"schema_version": 1, "channels": names})


def read_channel_names(path: Path) -> list[str]:
    """A bundle's ``channels.json``: the channel names, text, in network order. A damaged one is refused naming the
    file, the rule, the value and the fix (it had crashed predict with a bare JSONDecodeError or KeyError)."""
    from automed.artifacts import read_json
    from automed.errors import ArtifactError
    from automed.records import fits, shown

    fix = (
        "put back the channels.json automed wrote into the bundle, or bundle the model again (automed select)"
    )
    data = read_json(path, what=CHANNELS_FILE, damaged_fix=fix)
    names: Any = data.get("channels") if isinstance(data, dict) else data
    if not fits(list[str], names):
        rule = f"{CHANNELS_FILE} must hold channels, the channel names (text) in network order"
        raise ArtifactError.single(path, rule, shown(names), fix)
    result: list[str] = names
    return result


def channel_names(folder: Path) -> list[str] | None:
    """The channel names the model in ``folder`` was trained on, in network order: a training work dir's (its
    fingerprint), a bundle's (``channels.json``; a pair's: its first member's, the members are trainings of one
    dataset), an ``automed select`` folder's that chose a pair (its bundle's, else its members' work dirs'). ``None``
    when the model does not record them (a bundle written before bundles carried them)."""

    from automed.workdir import WorkDir, pair_members

    wd = WorkDir(folder)
    if wd.fingerprint.is_file():
        return trained_channel_names(folder)
    if (folder / CHANNELS_FILE).is_file():
        return read_channel_names(folder / CHANNELS_FILE)
    if (folder / ENSEMBLE_FILE).is_file():  # a pair's bundle
        members = read_pair(folder / ENSEMBLE_FILE)["members"]
        return channel_names(folder / members[0]["folder"]) if members else None
    if wd.pair.is_file():  # a selection folder that chose a pair
        found = channel_names(wd.bundle)
        if found is None:  # a bundle written before they were recorded: its members' trainings
            found = next(
                (n for m in pair_members(folder) if (n := trained_channel_names(m)) is not None), None
            )
        return found
    return None


def load_bundle(folder: Path, device: str | None = None) -> Any:
    """A predictor from a bundle folder: one training (plan.json, model.json, fold_*.pt), or several
    (``ensemble.json`` + one such folder per member, written when ``automed select`` chose a pair) as their
    ensemble; the plan's task builds them. A cascade's bundle holds its first stage in ``previous/``, loaded the
    same way."""
    from automed.plan.schema import Plan
    from automed.tasks.registry import task_for
    from automed.train.meta import read_meta
    from automed.workdir import WorkDir

    if (folder / ENSEMBLE_FILE).is_file():
        ens = read_pair(folder / ENSEMBLE_FILE)
        members = [load_bundle(folder / m["folder"], device) for m in ens["members"]]
        task = task_for(members[0].plan.task_type, folder)
        return task.ensemble_predictor(members, ens.get("postprocessing", []))
    meta = read_meta(WorkDir(folder).model)
    weights = [folder / f"{fold_name(f)}.pt" for f in meta.predict_folds]
    plan = Plan.load(folder / "plan.json")
    first = folder / PREVIOUS
    previous = load_bundle(first, device) if first.is_dir() else None
    return task_for(plan.task_type, folder).bundle_predictor(plan, meta, weights, device, previous)


class EnsembleModel(PythonModel):
    # predict takes an array (or a table's images) whose shape the registered signature describes; MLflow's type-hint
    # validation would otherwise wrap it and warn on every import that ``Any`` is not a supported hint
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.predictor = load_bundle(Path(context.artifacts["bundle"]))

    # ``model_input`` is hinted as a bare ndarray on purpose: for that type MLflow does not try to infer a signature
    # from the hint (it did, and warned on every registration; the registered signature is given explicitly)
    def predict(
        self,
        context: Any,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> Any:
        from automed.data.io import Geometry

        arr = np.asarray(model_input, dtype=np.float32)
        params = params or {}
        med = self.predictor.plan.original_median_spacing
        sp = tuple(_spacing(params, f"spacing_{a}", m) for a, m in zip("zyx", med, strict=True))
        _check_images(arr, self.predictor)
        if (
            arr.shape[0] == 0
        ):  # an empty batch: an empty answer of the signature's kind (np.stack had crashed)
            if hasattr(self.predictor, "target"):
                import pandas as pd

                return pd.DataFrame(columns=_columns(self.predictor.plan))
            return np.zeros((0, *arr.shape[2:]), np.int64)
        outs = []
        for case in arr:
            size = tuple(int(s) for s in reversed(case.shape[1:]))
            geo = Geometry(size, tuple(reversed(sp)), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
            res = self.predictor.predict_arrays(case, geo)
            outs.append(
                res.row(self.predictor.target) if hasattr(res, "row") else res.labels.astype(np.int64)
            )
        if outs and isinstance(outs[0], dict):  # an image-level model: one row per image
            import pandas as pd

            return pd.DataFrame(outs)
        return np.stack(outs)


def _spacing(params: dict[str, Any], name: str, default: float) -> float:
    """A spacing param in mm: finite and above 0 (0 had crashed with ZeroDivisionError, NaN with a cast error, and a
    negative one was taken)."""
    value = float(params.get(name, default))
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of mm above 0 (the voxel size); found {value}")
    return value


def _check_images(arr: np.ndarray, predictor: Any) -> None:
    """What automed predict refuses, refused here too: voxels that are no intensity (a NaN made a segmentation all
    background, a classification NaN probabilities with a class still named) and, for an image-level model,
    images of the other dimension (a 2D model took volumes)."""
    from automed.runtime.io import UNUSABLE, unusable_voxels

    bad = unusable_voxels(arr)
    if bad.any():
        images = sorted({int(i) for i in np.nonzero(bad.reshape(len(arr), -1).any(axis=1))[0]})
        raise ValueError(
            f"input voxels must be finite intensities; found {int(bad.sum())} {UNUSABLE} in image(s) {images[:10]}: "
            "replace them (e.g. with the background intensity) before predicting"
        )
    if not hasattr(predictor, "target") or arr.ndim != 5:
        return
    dims = predictor.plan.image_dimension
    found = 3 if arr.shape[2] > 1 else 2
    if found != dims:
        raise ValueError(
            f"the model was trained on {'volumes (3D)' if dims == 3 else 'pictures or single slices (2D)'}; found "
            f"{'volumes' if found == 3 else 'pictures'} of shape {arr.shape[1:]} (N, C, z, y, x: a picture has z = 1)"
        )


def _columns(plan: Any) -> list[str]:
    """The columns an image-level model's table has."""
    t = plan.target
    return ["prediction"] + ([] if t.kind == "regression" else [f"probability_{n}" for n in t.class_names])
