"""``extends:`` in planner presets, training configs and search spaces: chains merge child over parent (mappings key
by key), cycles and unknown parents are errors naming the file, the chain or the names there are."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automed.errors import ConfigError
from automed.plan.preset import PRESETS_DIR, load_preset
from automed.search.space import load_space
from automed.train.config import load_train_config


def _write(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_cpu_preset_extends_default_and_only_states_what_differs() -> None:
    cpu, default = load_preset("cpu"), load_preset("default")
    raw = yaml.safe_load((PRESETS_DIR / "cpu.yaml").read_text())
    assert raw["extends"] == "default" and "network" not in raw
    assert cpu.memory.device == "cpu" and cpu.configurations == ["3d_fullres"]
    assert (
        cpu.network == default.network
        and cpu.memory.bytes_per_element_cpu == default.memory.bytes_per_element_cpu
    )


def test_preset_chain_of_three_from_a_path(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"extends": "default", "name": "a", "batch": {"min_batch_size": 3}})
    b = _write(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b", "batch": {"max_batch_size": 64}})
    p = load_preset(b)
    assert p.name == "b" and p.batch.min_batch_size == 3 and p.batch.max_batch_size == 64
    assert p.network == load_preset("default").network


def test_training_config_extends_a_sibling(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {"epochs": 7, "learning_rate": 0.02, "augmentation": {"rotation_p": 0.1}})
    child = _write(
        tmp_path / "child.yaml", {"extends": "base", "epochs": 3, "augmentation": {"scale_p": 0.0}}
    )
    cfg = load_train_config(child)
    assert (cfg.epochs, cfg.learning_rate) == (3, 0.02)
    assert cfg.augmentation.rotation_p == 0.1 and cfg.augmentation.scale_p == 0.0


def test_search_space_extends(tmp_path: Path) -> None:
    base = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "quick.yaml").read_text())
    _write(tmp_path / "quick.yaml", base)
    child = _write(tmp_path / "mine.yaml", {"extends": "quick", "name": "mine", "fixed": {"epochs": 1}})
    s = load_space(child)
    assert s.name == "mine" and s.fixed["epochs"] == 1 and set(s.parameters) == set(base["parameters"])


def test_cycle_is_refused_with_the_chain(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"extends": "b", "epochs": 1})
    _write(tmp_path / "b.yaml", {"extends": "a", "epochs": 2})
    with pytest.raises(ConfigError) as err:
        load_train_config(tmp_path / "a.yaml")
    assert "must not loop" in str(err.value) and "a.yaml -> b.yaml -> a.yaml" in str(err.value)


def test_unknown_parent_offers_did_you_mean(tmp_path: Path) -> None:
    bad = _write(tmp_path / "p.yaml", {"extends": "defualt", "name": "p"})
    with pytest.raises(ConfigError) as err:
        load_preset(bad)
    msg = str(err.value)
    assert str(bad) in msg and "'defualt'" in msg and "Did you mean 'default'?" in msg
    missing = _write(tmp_path / "q.yaml", {"extends": "nope/base.yaml", "epochs": 1})
    with pytest.raises(ConfigError, match="must name an existing preset or YAML file"):
        load_train_config(missing)


def test_unknown_key_in_a_parent_is_still_reported(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {"epochz": 3})
    child = _write(tmp_path / "child.yaml", {"extends": "base.yaml", "epochs": 2})
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        load_train_config(child)
