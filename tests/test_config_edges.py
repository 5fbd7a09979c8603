"""Inputs that were accepted and silently misread, or crashed without a rule and a fix (found in review): zero
budgets and epochs, folds outside the split, unordered or infinite ranges, devices, resources, patch sizes, value
maps, regions, cube parameters, grid axes, search-space shapes, label files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automed.errors import AutomedError, ConfigError


@pytest.mark.parametrize("budget", ["0", "0m", 0])
def test_a_zero_budget_is_refused_not_read_as_no_budget(budget: str | int) -> None:
    from automed.config import parse_duration

    with pytest.raises(ConfigError, match="positive duration"):
        parse_duration(budget)
    assert parse_duration("1h30m") == 5400


def test_folds_and_fold_must_describe_a_split() -> None:
    from automed.workflow.shape import fold_count

    with pytest.raises(ConfigError, match="at least 2 folds"):
        fold_count("1", None, None)
    for bad in ([7], [-1], [0, 0]):
        with pytest.raises(ConfigError, match=r"folds of the 5-fold split \(0 to 4\)"):
            fold_count("5", None, bad)
    with pytest.raises(ConfigError, match="0 to 4"):
        fold_count(None, 600.0, [5])
    assert fold_count("3", None, [2]) == (3, False, [2])


def test_epochs_extend_and_overlays_below_their_minimum_are_refused(tmp_path: Path) -> None:
    from automed import api

    for kw in ({"epochs": 0}, {"extend": -3}, {"overlays": -1}):
        with pytest.raises(ConfigError, match="whole number of at least"):
            api.train(tmp_path / "nowhere", tmp_path / "W", **kw)  # type: ignore[arg-type]
    assert not (tmp_path / "W").exists()


def test_training_config_ranges_and_sizes() -> None:
    from pydantic import ValidationError

    from automed.train.config import TrainConfig

    for bad in ({"patch_size": [0, 32, 32]}, {"augmentation": {"scale_range": [2.0, 0.1]}},
                {"augmentation": {"lowres_zoom": [0, 1]}}, {"learning_rate": float("inf")},
                {"schema_version": 2}):  # fmt: skip
        with pytest.raises(ValidationError):
            TrainConfig.model_validate(bad)
    assert TrainConfig.model_validate(
        {"augmentation": {"scale_range": [1.0, 1.0]}}
    ).augmentation.scale_range == (1, 1)


def test_devices_resources_and_mining_options() -> None:
    from automed.train.device import pick_device
    from automed.workflow.patch_miner import parse_patch_size, parse_value_map
    from automed.workflow.sweep_stages import parse_resources

    with pytest.raises(ConfigError, match="cpu, cuda, cuda:N or auto"):
        pick_device("gpu")
    assert pick_device("cpu").type == "cpu"
    for text in ("cpu=nan", "gpu=inf", "cpu=1,cpu=4"):
        with pytest.raises(ConfigError, match="each once"):
            parse_resources(text)
    for text in ("0.5", "255.9"):
        with pytest.raises(ConfigError, match="whole pixels"):
            parse_patch_size(text)
    assert parse_patch_size("256") == (256, None) and parse_patch_size("100um") == (None, 100.0)
    for text in ("0:0,255:1,255:2", "255:300"):
        with pytest.raises(ConfigError, match="mapped once, to a label 0-255"):
            parse_value_map(text)


def test_regions_and_label_files_of_metrics(tmp_path: Path) -> None:
    from automed.workflow.metrics import _labels, parse_regions

    for specs in (["bg=0"], ["neg=-1,2"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError):
            parse_regions(specs)
    assert parse_regions(["wt=1,2,4"]) == {"wt": [1, 2, 4]}
    (tmp_path / "d.json").write_text('{"labels": {"background": 0, "whole tumor": [1, 2, 3]}}')
    with pytest.raises(ConfigError, match="one integer label value per name"):
        _labels(tmp_path / "d.json")


def test_cube_parameters_are_checked(tmp_path: Path) -> None:
    from automed.runtime.entry import read_parameters

    f = tmp_path / "parameters.yaml"
    f.write_text("runtime: onnx\ntta: false\nthreads: 2\n")
    assert read_parameters(f) == {"runtime": "onnx", "tta": False, "threads": 2}
    for text, what in (("runtme: openvino\n", "unknown parameter 'runtme'"), ("tta: no\n", "tta: 'no'"),
                       ("threads: -2\n", "threads: -2")):  # fmt: skip
        f.write_text(text)
        with pytest.raises(SystemExit, match=what):
            read_parameters(f)
    with pytest.raises(SystemExit, match="does not exist"):
        read_parameters(tmp_path / "none.yaml")
    # predict.py's --folds and --step-size, as a cube takes them (the bundle checks them against its folds)
    for text, folds in (
        ("folds: 0,1", "0,1"),
        ("folds: [0, 1]", "0,1"),
        ("folds: 1", "1"),
        ("folds: ALL", "all"),
    ):
        f.write_text(f"{text}\nstep_size: 0.25\n")
        assert read_parameters(f) == {"folds": folds, "step_size": 0.25}
    for text, what in (("folds: fold_0\n", "folds: 'fold_0' is not valid"), ("step_size: 0\n", "step_size: 0 "),
                       ("step_size: 1.5\n", "step_size: '1.5'"), ("step_size: true\n", "step_size: True"),
                       ("stepsize: 0.5\n", "unknown parameter 'stepsize'; the parameters are runtime, tta, "
                        "threads, folds and step_size")):  # fmt: skip
        f.write_text(text)
        with pytest.raises(SystemExit, match=what):
            read_parameters(f)


def test_grid_axes_and_space_shapes_are_config_errors(tmp_path: Path) -> None:
    from automed.search.grid import grid_as_space
    from automed.search.space import load_space

    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"architecture": [None, "resenc_unet"], "loss": ["ce"]}))
    with pytest.raises(ConfigError, match="architecture"):
        grid_as_space(tmp_path / "g.yaml")
    (tmp_path / "s.yaml").write_text("schema_version: 1\nname: x\nparameters: [loss]\n")
    with pytest.raises(ConfigError, match="maps each parameter name"):
        load_space(tmp_path / "s.yaml")


def test_a_safe_private_entry_must_be_a_list(tmp_path: Path) -> None:
    from automed.tools.deid import load_safe_private

    (tmp_path / "sp.yaml").write_text('{"GEMS": "0043,1A"}')
    with pytest.raises(AutomedError, match="not a list"):
        load_safe_private(tmp_path / "sp.yaml")
    (tmp_path / "sp.yaml").write_text('{"SIEMENS MR HEADER": ["0019,08"]}')
    assert load_safe_private(tmp_path / "sp.yaml") == {(0x19, "SIEMENS MR HEADER", 0x08)}


def test_preset_fields_that_contradict_each_other(tmp_path: Path) -> None:
    from automed.plan.preset import load_preset

    for body, what in (("batch: {min_batch_size: 8, max_batch_size: 2}", "min_batch_size <= max_batch_size"),
                       ("configurations: [3d_fullres, 3d_fullres]", "each once"),
                       ("budget: {fold_counts: [0, 5]}", "fold_counts"), ("planner: nnunet_resenc", "planner"),
                       ("network: {base_features: 64, max_features_3d: 8}", "base_features <=")):  # fmt: skip
        f = tmp_path / "p.yaml"
        f.write_text(f"schema_version: 1\nname: p\nextends: default\n{body}\n")
        with pytest.raises(ConfigError, match=what):
            load_preset(f)


def test_a_switched_off_scale_or_rotation_does_not_ride_along() -> None:
    import torch
    import torchio as tio

    from automed.train.augment import RandomRotateScale, build_augmentation
    from automed.train.config import Augmentation

    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.arange(216.0).reshape(1, 6, 6, 6)))
    for aug, kept in ((Augmentation(scale_p=0.0, rotation_p=1.0), "rotation"),
                      (Augmentation(scale_p=1.0, rotation_p=0.0), "scaling")):  # fmt: skip
        (spatial,) = [
            t
            for t in build_augmentation(aug, [1.0, 1.0, 1.0], False, False)
            if isinstance(t, RandomRotateScale)
        ]
        torch.manual_seed(0)
        history = spatial(subject).history
        (applied,) = [h for h in history if type(h).__name__ == "Affine"]
        if kept == "rotation":  # e.g. a size to regress: rotations only
            assert tuple(applied.scales) == (1.0, 1.0, 1.0) and any(d != 0 for d in applied.degrees)
        else:
            assert tuple(applied.degrees) == (0.0, 0.0, 0.0) and applied.scales[0] != 1.0


def test_one_run_names_unknown_keys_and_bad_values_and_yaml_errors_say_where(tmp_path: Path) -> None:
    """An unknown key and a bad value took two runs to see (the first stopped at the unknown key), the fix named the
    planner preset for a training config, and a YAML syntax error gave no line."""
    from automed.errors import ConfigError
    from automed.train.config import load_train_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("learning_rat: 0.01\nepochs: -3\n")
    with pytest.raises(ConfigError) as e:
        load_train_config(cfg)
    text = str(e.value)
    assert "learning_rat" in text and "learning_rate" in text and "'epochs'" in text
    assert "automed/train/config.py" in text and "planners/default.yaml" not in text
    space = tmp_path / "s.yaml"  # a key inside a parameter (a dict of models _unknown_keys does not descend)
    space.write_text("parameters:\n  lr: {type: float, lo: 0.0001, high: 0.01}\n")
    from automed.search.space import load_space

    with pytest.raises(ConfigError) as e:
        load_space(space)
    assert e.value.problems and "parameters.lr" in str(e.value) and "'lo'" in str(e.value)
    cfg.write_text("epochs: 3\naugmentation:\n  flip_p: [0.5\n")
    with pytest.raises(ConfigError, match=r"at line 4, column 1"):
        load_train_config(cfg)
