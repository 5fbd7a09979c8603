"""The README's commands as a first-time user types them: every ``automed VERB ...`` it shows (inline or in a code
block) names a verb the CLI has and only options that verb takes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from automed.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
GLOBAL = {"--debug", "--quiet", "-q", "--help"}


def _options() -> dict[str, set[str]]:
    commands = dict(getattr(typer.main.get_command(app), "commands", {}))
    return {v: {o for p in c.params for o in (*p.opts, *p.secondary_opts)} for v, c in commands.items()}


def _commands(text: str) -> list[str]:
    """Each command the README shows: inline spans starting with ``automed `` and code-block lines (continuations
    joined, ``#`` comments dropped)."""
    shown = re.findall(r"`(automed [a-z][^`]*)`", text)
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = (line.split(" #")[0] for line in block.replace("\\\n", " ").splitlines())
        shown += [line[line.index("automed ") :] for line in lines if "automed " in line]
    return shown


def test_readme_commands_use_options_their_verb_has() -> None:
    options = _options()
    shown = _commands(README.read_text(encoding="utf-8"))
    assert len(shown) > 30  # the table's examples, the classification, cascade, slide and cluster commands
    wrong = []
    for command in shown:
        verb, *words = re.sub(r"^automed (-q |--debug )*", "", command).split()
        if verb not in options:
            wrong.append(f"{command}: no verb {verb!r}")
            continue
        named = {w.split("=")[0] for w in words if re.fullmatch(r"--?[a-z][a-z0-9-]*(=.*)?", w)}
        wrong += [f"{command}: {verb} has no {o}" for o in sorted(named - options[verb] - GLOBAL)]
    assert not wrong, "\n".join(wrong)


def _help(verb: str) -> str:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize("verb", ["grid", "export", "package", "explain"])
def test_overwrite_help_speaks_of_the_verbs_output_not_predictions(verb: str) -> None:
    # these write configs, exports, cubes and maps: their --overwrite replaces an automed output, not predictions
    commands = dict(getattr(typer.main.get_command(app), "commands", {}))
    (said,) = [p.help or "" for p in commands[verb].params if "--overwrite" in p.opts]
    assert "predictions" not in said and "automed" in said


def test_patch_miner_help_says_a_slide_csv_patient_id_groups_the_folds() -> None:
    # patches.csv takes the slide CSV's PatientID (slides of one patient in one fold), as README says
    text = _help("patch-miner")
    assert "[,PatientID]" in text and "the slide CSV's PatientID" in text
