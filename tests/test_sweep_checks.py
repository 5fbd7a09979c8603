"""What ``automed sweep`` checks before any work and on resume, run through a scripted engine that trains nothing
(it writes the trial folders a real engine's trials would): the options a sweep refuses, what it leaves behind when
it refuses them, and what its live lines call the score."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from automed import api
from automed._version import __version__
from automed.search.context import SweepContext
from automed.search.engine import ENGINES, Engine, SearchSpec, TrialOutcome, Unit
from automed.search.space import SearchSpace
from automed.testing.synthetic import make_dataset
from automed.workflow.sweep_stages import STATE_VERSION

FIXED = {"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1, "num_workers": 0}


def _space(path: Path, fixed: dict[str, Any] | None = None) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "name": "tiny",
                "fixed": FIXED if fixed is None else fixed,
                "parameters": {"loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]}},
            }
        )
    )
    return path


class ScriptedEngine(Engine):
    """Runs no trial: ``script(ctx, stage, units)`` writes what the stage's trials would have (nothing by default)."""

    name = "scripted"
    script: Callable[[SweepContext, str, list[Unit]], None] = staticmethod(lambda ctx, stage, units: None)

    def concurrency(self) -> int:
        return 1

    def check_nodes(self, readable: list[str], writable: str) -> list[str]:
        return ["here"]

    def search(
        self,
        objective: Any,
        ctx: SweepContext,
        space: SearchSpace,
        points: list[dict[str, Any]],
        spec: SearchSpec,
        resume: bool,
    ) -> list[TrialOutcome]:
        ScriptedEngine.script(ctx, "search", [(f"t{i}", {}, spec.folds) for i in range(spec.n_trials)])
        return []

    def evaluate(
        self,
        objective: Any,
        ctx: SweepContext,
        units: list[Unit],
        concurrency: int,
        retries: int,
        resume: bool,
        stage: str = "promote",
    ) -> list[TrialOutcome]:
        ScriptedEngine.script(ctx, stage, units)
        return []


@pytest.fixture()
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedEngine]:
    monkeypatch.setitem(ENGINES._items, "scripted", ScriptedEngine)
    monkeypatch.setattr(ScriptedEngine, "script", staticmethod(lambda ctx, stage, units: None))
    return ScriptedEngine


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("seg") / "ds", n_cases=4, shape=(8, 12, 12), seed=3)


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_the_live_lines_of_a_classification_sweep_say_auc(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trial lines of a classification sweep said "Dice" for its AUC."""
    import automed.workflow.sweep as sweep_module
    from automed.testing.synthetic_image_level import make_classification

    labels: list[str] = []

    class Display:
        def __init__(self, *args: Any, score_label: str = "Dice", **kw: Any) -> None:
            labels.append(score_label)

        def __enter__(self) -> Display:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(sweep_module, "TrialsDisplay", Display)
    csv = make_classification(tmp_path / "d", 8, shape=(16, 16))
    lr = tmp_path / "lr.yaml"  # a classification model has no loss to search (refused): its learning rate
    lr.write_text(yaml.safe_dump({"name": "lr", "fixed": FIXED, "parameters": {
        "learning_rate": {"type": "categorical", "choices": [0.01, 0.001]}}}))  # fmt: skip
    api.sweep(
        csv, tmp_path / "S", space=lr, trials=1, folds=2, screen=False, engine="scripted",
        tracking_uri=_store(tmp_path), workers=0, show_progress=False,
    )  # fmt: skip
    api.sweep(
        seg, tmp_path / "S2", space=_space(tmp_path / "space.yaml"), trials=1, folds=2, screen=False, engine="scripted",
        tracking_uri=_store(tmp_path), workers=0, show_progress=False,
    )  # fmt: skip
    assert labels == ["AUC", "Dice"]


def test_a_grid_without_a_budget_or_epochs_is_refused_like_a_space(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine]
) -> None:
    """A --grid sweep without --budget trained 1000 epochs per fold without a word (a --space sweep was refused)."""
    from automed.errors import ConfigError

    strategy = tmp_path / "grid.yaml"
    strategy.write_text(yaml.safe_dump({"loss": ["dice_ce", "dice_focal"]}))
    with pytest.raises(ConfigError) as e:
        api.sweep(seg, tmp_path / "G0", grid=strategy, folds=2, engine="scripted", show_progress=False)
    assert "a sweep needs a time budget or a fixed number of epochs per trial" in str(e.value)
    assert "epochs: [N]" in str(e.value) and "--budget" in str(e.value)
    # a grid whose points fix the epochs runs
    strategy.write_text(yaml.safe_dump({"loss": ["dice_ce", "dice_focal"], "epochs": [2]}))
    api.sweep(
        seg, tmp_path / "G1", grid=strategy, folds=2, engine="scripted", tracking_uri=_store(tmp_path),
        show_progress=False,
    )  # fmt: skip


def test_a_sweep_without_a_budget_is_refused_before_any_work(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine]
) -> None:
    """The check ran after verify, fingerprint and plan: the new work dir kept fingerprint.json, plan.json and the
    lock (README: nothing half-written)."""
    from automed.errors import ConfigError

    strategy = tmp_path / "grid.yaml"
    strategy.write_text(yaml.safe_dump({"loss": ["dice_ce", "dice_focal"]}))
    space = _space(tmp_path / "space.yaml", fixed={})
    for kind, path in (("grid", strategy), ("space", space)):
        with pytest.raises(ConfigError, match="a time budget or a fixed number of epochs"):
            api.sweep(seg, tmp_path / kind, folds=2, engine="scripted", show_progress=False, **{kind: path})
        assert not (tmp_path / kind).exists()


def test_a_gpu_share_this_machine_lacks_is_refused_without_a_cluster(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--trial-resources cpu=1,gpu=1 on a machine without a GPU (Ray on this machine) waited forever for the GPU."""
    import torch

    from automed.errors import ConfigError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    gpus = {"n": 0}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus["n"])
    space = _space(tmp_path / "space.yaml")
    with pytest.raises(ConfigError) as e:
        api.sweep(
            seg, tmp_path / "W", space=space, trial_resources="cpu=1,gpu=1", screen=False, engine="scripted",
            tracking_uri=_store(tmp_path), show_progress=False,
        )  # fmt: skip
    text = str(e.value)
    assert (
        "--trial-resources" in text
        and "gpu=1 asked, 0 GPU(s) on this machine" in text
        and "--ray-address" in text
    )
    assert not (tmp_path / "W").exists()  # refused before any work
    # a cluster's GPUs are its own (--ray-address): not checked here; a share of this machine's GPU: taken
    gpus["n"] = 1
    wd = tmp_path / "S"
    api.sweep(
        seg, wd, space=space, trials=1, folds=2, screen=False, trial_resources="cpu=1,gpu=0.5", engine="scripted",
        tracking_uri=_store(tmp_path), show_progress=False,
    )  # fmt: skip
    gpus["n"] = 0  # resumed on a machine without one: refused too
    with pytest.raises(ConfigError, match=r"gpu=0\.5 asked, 0 GPU"):
        api.sweep(None, wd, resume=True, show_progress=False)
    from automed.workflow.sweep_stages import SweepOptions, check_gpus

    check_gpus(SweepOptions(trial_resources={"cpu": 1.0, "gpu": 1.0}, ray_address="auto"))


def test_a_resumed_sweep_refuses_another_base_config(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine]
) -> None:
    """`automed sweep --resume S --config other.yaml` went through and ignored the other config."""
    from typer.testing import CliRunner

    from automed.cli import app
    from automed.errors import ConfigError

    first, same, other = (tmp_path / f"{n}.yaml" for n in ("first", "same", "other"))
    first.write_text("learning_rate: 0.01\nloss: dice_ce\n")
    same.write_text("loss: dice_ce\nlearning_rate: 0.01\n")  # the same content, written otherwise
    other.write_text("learning_rate: 0.001\nloss: dice_ce\n")
    wd = tmp_path / "S"
    api.sweep(
        seg, wd, space=_space(tmp_path / "space.yaml"), config=first, trials=1, folds=2, screen=False,
        engine="scripted", tracking_uri=_store(tmp_path), show_progress=False,
    )  # fmt: skip
    with pytest.raises(ConfigError) as e:
        api.sweep(None, wd, config=other, resume=True, show_progress=False)
    text = str(e.value)
    assert "a resumed sweep keeps its own base config (--config)" in text
    assert "learning_rate: 0.001 asked, 0.01 saved" in text and "sweep.json" in text
    r = CliRunner().invoke(app, ["sweep", "--resume", str(wd), "--config", str(other)])
    assert isinstance(r.exception, ConfigError) and "keeps its own base config" in str(r.exception)
    api.sweep(None, wd, config=same, resume=True, show_progress=False)  # the same content: accepted


def test_a_resumed_sweep_logs_into_the_store_its_runs_are_in(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--resume S --tracking-uri sqlite:////other.db` created other.db, then crashed with "unexpected error:
    MlflowException: Run with id=... not found" (the sweep's run id is the old store's)."""
    from automed.errors import ConfigError

    (tmp_path / "stores").mkdir()
    first = tmp_path / "stores" / "first.db"
    wd = tmp_path / "S"
    api.sweep(
        seg, wd, space=_space(tmp_path / "space.yaml"), trials=1, folds=2, screen=False, engine="scripted",
        tracking_uri=f"sqlite:///{first}", show_progress=False,
    )  # fmt: skip
    other = tmp_path / "other.db"
    with pytest.raises(ConfigError) as e:
        api.sweep(None, wd, tracking_uri=f"sqlite:///{other}", resume=True, show_progress=False)
    text = str(e.value)
    assert "a resumed sweep logs into the store its runs are in" in text and f"sqlite:///{first}" in text
    assert "drop --tracking-uri" in text and not other.exists()  # nothing created
    monkeypatch.chdir(tmp_path / "stores")  # the same store, named relative to here: accepted
    api.sweep(None, wd, tracking_uri="sqlite:///first.db", resume=True, show_progress=False)
    # a store file moved since: refused at its old place, taken (and recorded) at its new one when its runs are there
    moved = tmp_path / "moved.db"
    first.rename(moved)
    with pytest.raises(ConfigError, match="the sweep's store is not where it was") as e:
        api.sweep(None, wd, resume=True, show_progress=False)
    assert "--tracking-uri" in str(e.value) and not first.exists()
    api.sweep(None, wd, tracking_uri=f"sqlite:///{moved}", resume=True, show_progress=False)
    state = json.loads((wd / "sweep.json").read_text())
    assert state["uri"] == f"sqlite:///{moved}" and state["options"]["tracking_uri"] == f"sqlite:///{moved}"
    api.sweep(None, wd, resume=True, show_progress=False)  # no need to name it again
    assert not first.exists()


def test_a_resumed_sweep_compares_its_space_by_content(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--space was compared as typed: the same file by its absolute path was refused, and a relative name that does
    not exist from the current folder was accepted."""
    from automed.errors import ConfigError

    (tmp_path / "here").mkdir()
    _space(tmp_path / "here" / "slow.yaml")
    monkeypatch.chdir(tmp_path / "here")
    wd = tmp_path / "S"
    api.sweep(
        seg, wd, space="slow.yaml", trials=1, folds=2, screen=False, engine="scripted",
        tracking_uri=_store(tmp_path), show_progress=False,
    )  # fmt: skip
    saved = json.loads((wd / "sweep.json").read_text())["options"]["space"]
    assert saved == str(tmp_path / "here" / "slow.yaml")  # where it was, whatever the folder of a resume
    api.sweep(None, wd, space=tmp_path / "here" / "slow.yaml", resume=True, show_progress=False)
    # (the automed and sweep state that started it are recorded, and kept by a resume: tests/test_sweep_version.py)
    recorded = json.loads((wd / "sweep.json").read_text())
    assert (recorded["automed_version"], recorded["state_version"]) == (__version__, STATE_VERSION)
    (tmp_path / "copy.yaml").write_text((tmp_path / "here" / "slow.yaml").read_text())
    api.sweep(None, wd, space=tmp_path / "copy.yaml", resume=True, show_progress=False)  # the same content
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:  # no slow.yaml here
        api.sweep(None, wd, space="slow.yaml", resume=True, show_progress=False)
    assert "slow.yaml" in str(e.value) and "search-space file" in str(e.value)
    _space(tmp_path / "other.yaml", fixed={"epochs": 5})
    with pytest.raises(ConfigError) as e:
        api.sweep(None, wd, space=tmp_path / "other.yaml", resume=True, show_progress=False)
    text = str(e.value)
    assert "a resumed sweep keeps its own search space (--space)" in text and "other.yaml" in text
    strategy = tmp_path / "grid.yaml"
    strategy.write_text(yaml.safe_dump({"loss": ["dice_ce"], "epochs": [2]}))
    with pytest.raises(ConfigError, match="a resumed sweep keeps its own search space"):
        api.sweep(None, wd, grid=strategy, resume=True, show_progress=False)


def test_a_classification_sweep_over_a_setting_its_models_do_not_use_is_refused() -> None:
    """Its dice_ce and ce trials trained bit-identical weights: the same model under several names."""
    from automed.errors import ConfigError
    from automed.search.space import SearchSpace
    from automed.workflow.sweep_checks import refuse_ignored

    space = SearchSpace.model_validate(
        {"name": "s", "parameters": {"loss": {"type": "categorical", "choices": ["dice_ce", "ce"]},
                                     "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True,
                                            "target": "learning_rate"}}}
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"searches settings its models use.*loss"):
        refuse_ignored(space, "classification", "clsloss.yaml")
    refuse_ignored(space, "segmentation", "clsloss.yaml")  # a segmentation model uses its loss


def test_the_optuna_engine_takes_no_gpu_share_so_none_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only Ray waits for a GPU share; an optuna-engine sweep with gpu=1 on a GPU-less machine ran before the check
    and must still run."""
    import torch

    from automed.errors import ConfigError
    from automed.workflow.sweep_stages import SweepOptions, check_gpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    check_gpus(SweepOptions(engine="optuna", trial_resources={"cpu": 1.0, "gpu": 1.0}))
    with pytest.raises(ConfigError, match="Ray would wait"):
        check_gpus(SweepOptions(engine="ray", trial_resources={"cpu": 1.0, "gpu": 1.0}))


def test_a_device_this_machine_lacks_is_refused_before_the_sweep_not_in_every_trial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sweep --device cuda`` on a machine without CUDA failed inside each trial, one by one; it is refused before
    any work, naming the option. A cluster's devices are its own (--ray-address, RAY_ADDRESS): not checked here."""
    import torch

    from automed.errors import ConfigError
    from automed.workflow.sweep_stages import SweepOptions, check_gpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for engine in ("ray", "optuna"):
        with pytest.raises(ConfigError) as err:
            check_gpus(SweepOptions(engine=engine, device="cuda"))
        assert err.value.problems[0].file == "--device" and "--device cpu" in err.value.problems[0].fix
    check_gpus(SweepOptions(device="cpu"))
    check_gpus(SweepOptions(device="cuda", ray_address="auto"))
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    check_gpus(SweepOptions(device="cuda"))


@pytest.mark.slow
def test_a_damaged_sweep_json_is_refused_before_any_work(
    tmp_path: Path, seg: Path, scripted: type[ScriptedEngine]
) -> None:
    """A resume read sweep.json as it found it: truncated, a JSONDecodeError; without its space (edited by hand), a
    bare KeyError once the dataset and store had been checked; a run without its experiment, KeyError too. Each is
    now refused naming the file and the key (every way of damaging it: tests/test_sweep_state.py)."""
    from automed.errors import ArtifactError

    wd = tmp_path / "S"
    api.sweep(
        seg, wd, space=_space(tmp_path / "space.yaml"), trials=1, folds=2, screen=False, engine="scripted",
        tracking_uri=_store(tmp_path), show_progress=False,
    )  # fmt: skip
    good = (wd / "sweep.json").read_text()
    state = json.loads(good)
    assert state["sweep_run_id"] and state["experiment"]  # what the run's MLflow ids are found by
    damaged = {
        good[: len(good) // 2]: "sweep.json must be JSON",
        json.dumps({k: v for k, v in state.items() if k != "space"}): "sweep.json must hold space",
        json.dumps({k: v for k, v in state.items() if k != "experiment"}): "sweep.json must hold experiment",
    }
    files = sorted(p.relative_to(wd) for p in wd.rglob("*"))
    for text, rule in damaged.items():
        (wd / "sweep.json").write_text(text)
        with pytest.raises(ArtifactError, match=rule) as e:
            api.sweep(None, wd, resume=True, show_progress=False)
        assert str(wd / "sweep.json") in str(e.value) and "-o NEW_WORKDIR" in str(e.value)
        assert (wd / "sweep.json").read_text() == text and sorted(
            p.relative_to(wd) for p in wd.rglob("*")
        ) == files
    (wd / "sweep.json").write_text(good)
    api.sweep(None, wd, resume=True, show_progress=False)  # as automed wrote it: resumed
