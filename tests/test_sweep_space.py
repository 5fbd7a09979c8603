"""Search spaces and grids: validation messages, sampling with conditions, plan-aware resolution, de-duplication."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from automed import api
from automed.errors import ConfigError
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.search.grid import grid_as_space, grid_points, write_grid
from automed.search.space import default_point, load_space, resolve, suggest
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _space(tmp_path: Path, parameters: dict[str, object], **top: object) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(
        yaml.safe_dump({"schema_version": 1, "name": "t", **top, "parameters": parameters}, sort_keys=False)
    )
    return p


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_space(path)
    for prob in e.value.problems:
        assert prob.file == str(path) and prob.fix, prob
    return [f"{p.rule} | {p.value} | {p.fix}" for p in e.value.problems]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    root = tmp_path_factory.mktemp("space")
    ds = make_dataset(root / "ds", n_cases=4, shape=(20, 40, 36), seed=2)
    return api.plan_dataset(ds, root / "W", preset="cpu", run_preprocess=False, show_progress=False).plan


def test_shipped_spaces_load() -> None:
    for name in ("quick", "default"):
        space = load_space(ROOT / "search_spaces" / f"{name}.yaml")
        assert space.name == name and space.parameters
    assert set(grid_as_space(ROOT / "search_spaces" / "grid_example.yaml").parameters) == {
        "loss",
        "learning_rate",
        "augmentation.flip_p",
    }


def test_bad_bounds(tmp_path: Path) -> None:
    probs = _problems(
        _space(
            tmp_path,
            {
                "learning_rate": {"type": "float", "low": 0.1, "high": 0.01},
                "weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "log": True},
                "epochs": {"type": "int", "low": 2},
                "momentum": {"type": "float", "low": 0.5, "high": 0.9, "default": 0.95},
                "batch_size": {"type": "int", "low": 2, "high": 8, "step": 1.5},
            },
        )
    )
    text = "\n".join(probs)
    assert "learning_rate: low must be below high | low=0.1, high=0.01" in text
    assert "weight_decay: a log-scale range must be positive | low=0.0" in text
    assert "epochs: a int parameter needs low and high" in text
    assert "momentum: the default must lie within [low, high] | 0.95" in text
    assert "batch_size: an int parameter needs a whole step | step=1.5" in text


def test_a_float_parameter_of_a_whole_number_field_is_refused_at_load(tmp_path: Path) -> None:
    """`base_features: {type: float, low: 16, high: 32}` loaded (its whole bounds pass the int field) and every
    sampled trial failed, each said only "For further information visit https://errors.pydantic.dev/..."."""
    from automed.workflow.trial import record_failure

    space = {
        "base_features": {"type": "float", "low": 16, "high": 32},
        "epochs": {"type": "float", "low": 2, "high": 9},
    }
    text = "\n".join(_problems(_space(tmp_path, space)))
    for name in ("base_features", "epochs"):
        assert f"parameters.{name}: `{name}` takes whole numbers | type=float" in text
    load_space(
        _space(tmp_path, {"learning_rate": {"type": "float", "low": 1, "high": 2}})
    )  # a float field: fine
    try:
        TrainConfig.model_validate({"base_features": 22.1})
    except ValueError as exc:
        record_failure(tmp_path / "t", exc)
    message = json.loads((tmp_path / "t" / "failed.json").read_text())["message"]
    assert "errors.pydantic.dev" not in message and "integer" in message


def test_unknown_parameter_key_and_field(tmp_path: Path) -> None:
    probs = _problems(_space(tmp_path, {"learning_rate": {"type": "float", "lowr": 0.001, "high": 0.1}}))
    assert "unknown key 'parameters.learning_rate.lowr'" in probs[0] and "Did you mean 'low'?" in probs[0]
    probs = _problems(
        _space(tmp_path, {"lr": {"type": "float", "target": "learnin_rate", "low": 0.001, "high": 0.1}})
    )
    assert "the target must be a training-config field" in probs[0]
    assert "'learnin_rate'" in probs[0] and "Did you mean 'learning_rate'?" in probs[0]
    probs = _problems(_space(tmp_path, {"loss": {"type": "categorical", "choices": ["dice_ce", "dicee"]}}))
    assert "the value is invalid for `loss`" in probs[0] and "'dicee'" in probs[0]
    probs = _problems(
        _space(tmp_path, {"loss": {"type": "categorical", "choices": ["ce"]}}, fixed={"epoch": 3})
    )
    assert "fixed: keys must be training-config fields" in probs[0] and "Did you mean 'epochs'?" in probs[0]
    # fixed augmentation values are judged before any trial (over the defaults they are merged onto)
    for bad, why in (({"flip_pp": 0.0}, "flip_pp"), ({"flip_p": 2.0}, "flip_p"), ("none", "augmentation")):
        probs = _problems(
            _space(
                tmp_path, {"loss": {"type": "categorical", "choices": ["ce"]}}, fixed={"augmentation": bad}
            )
        )
        assert "fixed.augmentation: invalid value" in probs[0] and why in probs[0], probs
    ok = _space(
        tmp_path, {"loss": {"type": "categorical", "choices": ["ce"]}}, fixed={"augmentation": {"flip_p": 0}}
    )
    assert load_space(ok).fixed == {"augmentation": {"flip_p": 0}}


def test_bad_conditions(tmp_path: Path) -> None:
    probs = _problems(
        _space(
            tmp_path,
            {
                "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
                "learning_rate": {"type": "float", "low": 0.001, "high": 0.1},
                "momentum": {"type": "float", "low": 0.9, "high": 0.99, "when": {"optimiser": "sgd"}},
                "nesterov": {"type": "bool", "when": {"optimizer": "sgdd"}},
                "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-3, "when": {"learning_rate": 0.01}},
                "poly_exponent": {"type": "float", "low": 0.5, "high": 1.0, "when": {"loss": "ce"}},
                "loss": {"type": "categorical", "choices": ["ce", "dice_ce"]},
            },
        )
    )
    text = "\n".join(probs)
    assert "momentum: `when` must name a categorical or bool parameter defined above | 'optimiser'" in text
    assert "Did you mean 'optimizer'?" in text
    assert "nesterov: the condition's value is not a choice of `optimizer` | 'sgdd'" in text
    assert (
        "weight_decay: `when` can only test categorical or bool parameters | learning_rate is float" in text
    )
    assert (
        "poly_exponent: `when` must name a categorical or bool parameter defined above (it is defined later: move it above)"
        in text
    )


def test_sampling_respects_conditions() -> None:
    space = load_space(ROOT / "search_spaces" / "quick.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        values = suggest(space, study.ask())
        seen.add(values["optimizer"])
        assert ("lr_sgd" in values) == (values["optimizer"] == "sgd")
        assert ("lr_adamw" in values) == (values["optimizer"] == "adamw")
    assert seen == {"auto", "sgd", "adamw"}


def test_resolve_is_plan_aware(plan: Plan) -> None:
    space = load_space(ROOT / "search_spaces" / "default.yaml")
    cfgp = plan.configurations["3d_fullres"]
    base = TrainConfig()
    point = default_point(space, base, plan)
    assert point["optimizer"] == "auto" and "lr_sgd" not in point and point["patch_size_scale"] == 1.0
    assert point["n_stages"] == min(6, cfgp.network.n_stages)
    cfg = resolve(space, base, plan, point)
    assert cfg.optimizer == "auto" and cfg.learning_rate is None  # the planner's rule decides per fold
    assert cfg.patch_size == cfgp.patch_size and cfg.batch_size == cfgp.batch_size
    assert cfg.augmentation == base.augmentation
    small = resolve(
        space,
        base,
        plan,
        {
            **point,
            "patch_size_scale": 0.8,
            "batch_size_scale": 0.5,
            "augmentation_strength": 1.5,
            "normalization": "rescale_0_1",
            "base_features": 16,
            "n_stages": 3,
        },
    )
    assert small.patch_size is not None
    assert all(p % d == 0 for p, d in zip(small.patch_size, cfgp.network.divisor, strict=True))
    assert small.batch_size == max(1, round(cfgp.batch_size * 0.5))
    assert small.augmentation.gamma_p == pytest.approx(0.45) and small.augmentation.flip_p == pytest.approx(
        0.75
    )
    eff = effective_plan(plan, small).configurations["3d_fullres"]
    assert eff.data_identifier == "3d_fullres__rescale_0_1"
    assert {n.scheme for n in eff.normalization} == {"rescale_0_1"}
    assert eff.network.n_stages == 3 and eff.network.features_per_stage == [16, 32, 64]
    assert effective_plan(plan, cfg) is plan  # no overrides: the plan itself


def test_grid_dedupes_and_writes_configs(tmp_path: Path, plan: Plan) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("epochs: 3\nlearning_rate: 0.01\n")
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text(
        yaml.safe_dump(
            {
                "loss": ["dice_ce", "ce"],
                "learning_rate": [0.01, 0.01, 0.001],
                "augmentation": {"flip_p": [0.0, 0.5]},
            }
        )
    )
    df = write_grid(base, strategy, tmp_path / "out")
    assert len(df) == 8  # 2 x 2 (the repeated 0.01 counts once) x 2
    files = sorted((tmp_path / "out").glob("config_*.yaml"))
    assert len(files) == 8 and (tmp_path / "out" / "grid.csv").is_file()
    loaded = [TrainConfig.model_validate(yaml.safe_load(f.read_text())) for f in files]
    assert len({c.digest() for c in loaded}) == 8 and all(c.epochs == 3 for c in loaded)
    # what neither the base nor the grid sets stays unset: the plan decides it (a pinned 3d_fullres was refused on
    # a 2D dataset)
    assert all(c.model_fields_set == {"epochs", "learning_rate", "loss", "augmentation"} for c in loaded)
    assert all(set(c.augmentation.model_fields_set) == {"flip_p"} for c in loaded)
    # combinations resolving to one config run once: setting the base's own value adds nothing
    strategy.write_text(yaml.safe_dump({"loss": ["dice_ce"], "learning_rate": [0.01], "epochs": [3, 3]}))
    space = grid_as_space(strategy)
    assert len(grid_points(space, TrainConfig(epochs=3), plan)) == 1
    strategy.write_text(yaml.safe_dump({"los": ["ce"]}))
    with pytest.raises(ConfigError) as e:
        write_grid(base, strategy, tmp_path / "bad")
    assert "Did you mean 'loss'?" in str(e.value) and not (tmp_path / "bad").exists()


def test_grid_output_is_claimed_and_replaced_whole(tmp_path: Path) -> None:
    from automed import api
    from automed.errors import ArtifactError

    base, strategy = tmp_path / "cfg" / "base.yaml", tmp_path / "cfg" / "strategy.yaml"
    base.parent.mkdir()
    base.write_text("epochs: 3\n")
    strategy.write_text(yaml.safe_dump({"loss": ["dice_ce", "ce"], "learning_rate": [0.01, 0.001]}))
    assert len(api.grid(base, strategy, tmp_path / "g")) == 4
    strategy.write_text(yaml.safe_dump({"loss": ["ce"]}))  # a smaller grid into the same folder
    assert len(api.grid(base, strategy, tmp_path / "g")) == 1
    assert sorted(f.name for f in (tmp_path / "g").glob("config_*.yaml")) == ["config_000.yaml"]  # none stale
    with pytest.raises(ArtifactError, match="must not be, or hold"):  # the base config's own folder
        api.grid(base, strategy, tmp_path / "cfg")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for overwrite in (False, True):  # a folder of the user's is never replaced
        with pytest.raises(ArtifactError, match="never replaces a folder it did not write"):
            api.grid(base, strategy, tmp_path / "mine", overwrite=overwrite)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and base.read_text() == "epochs: 3\n"


def test_processes_sampling_one_study_draw_different_configurations() -> None:
    """The optuna engine runs its trials in several processes on one study: each process's sampler gets its own
    seed (alike, every process drew the same configuration), and the same process index draws the same again."""
    from automed.search.engine import Engine, SearchSpec

    def first_draws(sampler_name: str, worker: int) -> list[float]:
        spec = SearchSpec(n_trials=9, folds=[0], concurrency=3, sampler=sampler_name, seed=5)  # type: ignore[arg-type]
        study = optuna.create_study(sampler=Engine.sampler(spec, worker))
        return [study.ask().suggest_float("lr", 1e-4, 1e-1, log=True) for _ in range(2)]

    for name in ("tpe", "random"):
        draws = [first_draws(name, w) for w in range(3)]
        assert len({d[0] for d in draws}) == 3, draws
        assert first_draws(name, 1) == draws[1]


def test_trials_table_tells_a_stopped_trial_from_one_that_never_ran(tmp_path: Path) -> None:
    """A trial stopped by ASHA mid-fold showed folds_done 0 and compute 0.0, like one that never ran."""
    import json

    from automed.search.report import trials_table

    def trial(key: str, folds: dict[str, float], partial: float | None = None, epochs: int = 0) -> None:
        td = tmp_path / "trials" / key
        td.mkdir(parents=True)
        (td / "trial.json").write_text(json.dumps({"key": key, "values": {"lr": 0.01}}))
        done = {k: {"score": v, "epochs": 2} for k, v in folds.items()}
        (td / "result.json").write_text(
            json.dumps({"folds": done, "score": 0.8, "compute_s": 10.0 * len(folds)})
        )
        for k in folds:
            f = td / "train" / "3d_fullres" / f"fold_{k}"
            f.mkdir(parents=True)
            (f / "fold_result.json").write_text(json.dumps({"compute_s": 10.0}))
            (f / "progress.json").write_text(json.dumps({"history": [{}, {}]}))
        if partial is not None:
            f = td / "train" / "3d_fullres" / f"fold_{len(folds)}"
            f.mkdir(parents=True)
            (f / "fold_partial.json").write_text(json.dumps({"compute_s": partial}))
            (f / "progress.json").write_text(json.dumps({"history": [{}] * epochs}))

    trial("a", {"0": 0.7, "1": 0.8})
    trial("b", {"0": 0.75}, partial=5.0, epochs=1)  # screened, then stopped in fold 1: counted once
    trial("c", {}, partial=30.0, epochs=3)
    trial("d", {})
    trial("e", {}, partial=12.0, epochs=2)
    (tmp_path / "trials" / "e" / "failed.json").write_text(json.dumps({"error": "RuntimeError"}))
    table = trials_table(tmp_path, 2).set_index("trial")
    assert table["status"].to_dict() == {
        "a": "cv", "b": "screened", "c": "stopped early", "d": "not run", "e": "failed",
    }  # fmt: skip
    assert table.loc["c", "epochs"] == 3 and table.loc["c", "compute_s"] == 30.0
    assert table.loc["a", "epochs"] == 4 and table.loc["d", "compute_s"] == 0.0
    assert table.loc["b", "compute_s"] == 15.0 and table.loc["b", "epochs"] == 3


def test_conflicts_and_silent_edge_cases_are_reported_in_one_run(tmp_path: Path) -> None:
    """A fixed value a parameter overrides, an unconditional and a conditional parameter of one target, a bool
    with choices, an int default of 4.5, a step wider than its range and repeated choices: each was accepted
    silently (and a bad fixed value hid every parameter problem until fixed)."""
    space = {
        "name": "edge",
        "fixed": {"optimizer": "sgd", "learning_rate": 0.01, "weight_decay": -1},
        "parameters": {
            "optimizer": {"type": "categorical", "choices": ["sgd", "sgd", "adamw"]},
            "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True, "target": "learning_rate"},
            "lr2": {"type": "float", "low": 0.01, "high": 0.1, "target": "learning_rate",
                    "when": {"optimizer": "adamw"}},
            "deterministic": {"type": "bool", "choices": [True]},
            "epochs": {"type": "int", "low": 1, "high": 9, "default": 4.5},
            "momentum": {"type": "float", "low": 0.001, "high": 0.002, "step": 0.01},
        },
    }  # fmt: skip
    f = tmp_path / "edge.yaml"
    f.write_text(yaml.safe_dump(space))
    with pytest.raises(ConfigError) as e:
        load_space(f)
    text = str(e.value)
    for rule in (
        "fixed.weight_decay: invalid value",
        "a parameter and `fixed:` set the same field",
        "one of them always applies",
        "each choice is listed once",
        "a bool parameter tries false and true",
        "an int parameter's default is a whole number",
        "the step must fit in [low, high]",
    ):
        assert rule in text, rule


def test_a_grid_of_plan_aware_scales_is_accepted(tmp_path: Path, plan: Plan) -> None:
    """batch_size_scale: [1.0, 0.5] in a grid was refused with a fix a grid cannot follow ("use type float")."""
    strategy = tmp_path / "scales.yaml"
    strategy.write_text(yaml.safe_dump({"batch_size_scale": [1.0, 0.5], "loss": ["ce"]}))
    space = grid_as_space(strategy)
    assert len(grid_points(space, TrainConfig(), plan)) in (1, 2)  # 0.5 may resolve to the same batch
    strategy.write_text(yaml.safe_dump({"batch_size_scale": [1.0, -2]}))
    with pytest.raises(ConfigError, match="takes positive numbers"):
        grid_as_space(strategy)
