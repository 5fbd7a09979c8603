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


def test_a_bad_key_is_reported_in_the_file_that_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the files are named as the user wrote them, relative to here
    (tmp_path / "ext").mkdir()
    _write(tmp_path / "ext" / "badparent_p.yaml", {"iterations_per_epch": 5, "epochs": "many"})
    child = _write(tmp_path / "ext" / "badparent.yaml", {"extends": "badparent_p", "learning_rate": "fast"})
    with pytest.raises(ConfigError) as err:
        load_train_config(child)
    by_rule = {p.rule: p.file for p in err.value.problems}
    parent = str(tmp_path / "ext" / "badparent_p.yaml")
    with pytest.raises(ConfigError) as err:
        load_train_config(Path("ext/badparent.yaml"))
    assert "  - ext/badparent_p.yaml: unknown key 'iterations_per_epch'" in str(err.value)
    assert by_rule["unknown key 'iterations_per_epch'"] == parent
    assert any(r.startswith("'epochs'") and f == parent for r, f in by_rule.items())
    assert any(r.startswith("'learning_rate'") and f == str(child) for r, f in by_rule.items())
    # both define it: the child's value wins, so the child is named
    _write(tmp_path / "both_p.yaml", {"augmentation": {"rotaton_p": 0.1, "scale_p": "x"}})
    both = _write(tmp_path / "both.yaml", {"extends": "both_p", "augmentation": {"scale_p": "y"}})
    with pytest.raises(ConfigError) as err:
        load_train_config(both)
    by_rule = {p.rule: p.file for p in err.value.problems}
    assert by_rule["unknown key 'augmentation.rotaton_p'"] == str(tmp_path / "both_p.yaml")
    assert any(r.startswith("'augmentation.scale_p'") and f == str(both) for r, f in by_rule.items())


def test_a_bad_key_in_a_parent_preset_or_search_space_names_the_parent(tmp_path: Path) -> None:
    _write(tmp_path / "parent.yaml", {"extends": "cpu", "name": "p", "memory": {"target_gbb": 4}})
    child = _write(tmp_path / "child.yaml", {"extends": "parent.yaml", "name": "c"})
    with pytest.raises(ConfigError) as err:
        load_preset(child)
    (problem,) = err.value.problems
    assert problem.rule == "unknown key 'memory.target_gbb'" and problem.file == str(tmp_path / "parent.yaml")
    _write(tmp_path / "sp.yaml", {"name": "sp", "parameters": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                                      "target": "learning_rate", "lgo": True}}})  # fmt: skip
    mine = _write(tmp_path / "mine.yaml", {"extends": "sp", "name": "mine", "fixde": {"epochs": 1}})
    with pytest.raises(ConfigError) as err:
        load_space(mine)
    by_rule = {p.rule: p.file for p in err.value.problems}
    assert by_rule == {"unknown key 'parameters.lr.lgo'": str(tmp_path / "sp.yaml")}
    _write(tmp_path / "sp.yaml", {"name": "sp", "parameters": {}, "fixde": {"epochs": 1}})
    with pytest.raises(ConfigError) as err:
        load_space(mine)
    assert {p.rule: p.file for p in err.value.problems} == {
        "unknown key 'fixde'": str(mine)  # both define it: the child's value is the one used
    }


@pytest.mark.parametrize("body", ["- epochs: 3\n", "3\n", "", "# only a comment\n"])
def test_a_parent_that_is_not_a_mapping_is_an_error_naming_it(tmp_path: Path, body: str) -> None:
    (tmp_path / "base.yaml").write_text(body)
    child = _write(tmp_path / "child.yaml", {"extends": "base", "epochs": 2})
    with pytest.raises(ConfigError) as err:
        load_train_config(child)
    (problem,) = err.value.problems
    assert (
        problem.file == str(tmp_path / "base.yaml") and "an extends: parent must be a mapping" in problem.rule
    )
    assert "child.yaml" in str(err.value)


def test_a_mistyped_parent_path_offers_did_you_mean(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {"epochs": 7})
    child = _write(tmp_path / "child.yaml", {"extends": "bse.yaml", "epochs": 2})
    with pytest.raises(ConfigError) as err:
        load_train_config(child)
    assert "Did you mean 'base.yaml'?" in str(err.value) and str(child) in str(err.value)
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "base.yaml", {"epochs": 7})
    child = _write(tmp_path / "child.yaml", {"extends": "sub/bas.yaml", "epochs": 2})
    with pytest.raises(ConfigError, match=r"Did you mean 'sub/base\.yaml'"):
        load_train_config(child)


@pytest.mark.parametrize("ref", ["./", "/"])
def test_extends_naming_a_folder_is_a_clear_error(tmp_path: Path, ref: str) -> None:
    from automed.config import read_extending

    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {ref}\nepochs: 3\n")
    with pytest.raises(ConfigError, match="must name an existing preset or YAML file"):
        read_extending(child)


def test_a_preset_extends_a_sibling_by_name_and_automeds_presets_come_first(tmp_path: Path) -> None:
    """`extends: base` beside base.yaml was refused, the error listing only automed's own presets."""
    _write(tmp_path / "base.yaml", {"extends": "default", "name": "base", "batch": {"max_batch_size": 4}})
    child = _write(tmp_path / "child.yaml", {"extends": "base", "name": "child"})
    p = load_preset(child)
    assert p.name == "child" and p.batch.max_batch_size == 4
    _write(tmp_path / "default.yaml", {"extends": "default", "name": "shadow"})  # names automed's, not itself
    assert load_preset(tmp_path / "default.yaml").network == load_preset("default").network
    with pytest.raises(ConfigError) as err:
        load_preset(_write(tmp_path / "typo.yaml", {"extends": "bsae"}))
    assert "'base', 'child', 'cpu', 'default'" in err.value.problems[0].fix
    assert f"{PRESETS_DIR.resolve()} or {tmp_path.resolve()}" in err.value.problems[0].fix
    assert "Did you mean 'base'?" in err.value.problems[0].fix


def test_a_users_search_space_extends_a_shipped_one_by_name(tmp_path: Path) -> None:
    """`extends: default` in a user's space (not beside search_spaces/) was refused: names looked only beside it."""
    from automed.search.space import SPACES_DIR

    shipped = load_space(SPACES_DIR / "default.yaml")
    mine = _write(tmp_path / "mine.yaml", {"extends": "default", "name": "mine", "fixed": {"epochs": 2}})
    s = load_space(mine)
    assert s.name == "mine" and s.fixed["epochs"] == 2 and s.parameters == shipped.parameters
    # a chain of two through a sibling, ending at automed's quick.yaml
    _write(tmp_path / "team.yaml", {"extends": "quick", "name": "team", "fixed": {"epochs": 3}})
    child = _write(tmp_path / "child.yaml", {"extends": "team", "name": "child"})
    assert load_space(child).parameters == load_space(SPACES_DIR / "quick.yaml").parameters
    assert load_space(child).fixed["epochs"] == 3


def test_a_child_space_redefines_or_drops_an_inherited_parameter(tmp_path: Path) -> None:
    """A parameter merged key by key kept the parent's low/high under the child's `type: categorical` and was
    refused naming the child ("remove them": they were not in it); an inherited parameter could not be dropped."""
    from automed.search.space import SPACES_DIR

    quick = load_space(SPACES_DIR / "quick.yaml")
    mine = _write(tmp_path / "mine.yaml", {"extends": "quick", "name": "mine", "parameters": {
        "batch_size_scale": {"type": "categorical", "choices": [0.5, 1.0]}, "lr_sgd": None}})  # fmt: skip
    s = load_space(mine)
    assert s.parameters["batch_size_scale"].type == "categorical"
    assert s.parameters["batch_size_scale"].low is None and s.parameters["batch_size_scale"].choices == [
        0.5,
        1.0,
    ]
    assert "lr_sgd" not in s.parameters
    kept = [n for n in quick.parameters if n != "lr_sgd"]
    assert list(s.parameters) == kept  # in the parent's order: a `when` names the parameters above it
    assert all(s.parameters[n] == quick.parameters[n] for n in kept if n != "batch_size_scale")


def test_a_search_spaces_unknown_parent_or_cycle_is_the_presets_error(tmp_path: Path) -> None:
    from automed.search.space import SPACES_DIR

    typo = _write(tmp_path / "typo.yaml", {"extends": "defualt", "name": "t"})
    with pytest.raises(ConfigError) as err:
        load_space(typo)
    (problem,) = err.value.problems
    assert problem.file == str(typo) and problem.value == "'defualt'"
    assert "must name an existing preset or YAML file" in problem.rule
    assert "Did you mean 'default'?" in problem.fix and "'quick'" in problem.fix
    assert f"{SPACES_DIR.resolve()} or {tmp_path.resolve()}" in problem.fix
    _write(tmp_path / "a.yaml", {"extends": "b", "name": "a"})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b"})
    with pytest.raises(ConfigError, match=r"must not loop.*a\.yaml -> b\.yaml -> a\.yaml"):
        load_space(tmp_path / "a.yaml")


def test_a_name_that_is_both_automeds_and_an_edited_sibling_is_refused(tmp_path: Path) -> None:
    """A team's edited default.yaml beside mine.yaml (`extends: default`) had silently given way to automed's own:
    the sweep ran automed's ranges. Two different files by one name are refused, naming both; an unchanged copy is
    no ambiguity; a path says which."""
    from automed.search.space import SPACES_DIR

    shipped = SPACES_DIR / "default.yaml"
    (tmp_path / "default.yaml").write_bytes(shipped.read_bytes())
    mine = _write(tmp_path / "mine.yaml", {"extends": "default", "name": "mine"})
    assert (
        load_space(mine).parameters == load_space(shipped).parameters
    )  # an unchanged copy: either is the same
    edited = yaml.safe_load(shipped.read_text())
    edited["name"] = "team-default"
    _write(tmp_path / "default.yaml", edited)
    with pytest.raises(ConfigError) as err:
        load_space(mine)
    (problem,) = err.value.problems
    assert str(shipped) in problem.value and str(tmp_path / "default.yaml") in problem.value
    assert "extends: ./default.yaml" in problem.fix
    _write(mine, {"extends": "./default.yaml", "name": "mine"})
    assert load_space(mine).name == "mine"
