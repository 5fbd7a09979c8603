"""Patient data: case IDs and local paths never leave the machine (MLflow params, tags, artifacts, model versions,
the model card, export and cube folders) unless the user asks; tracking URIs lose their credentials."""

from __future__ import annotations

import json
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest
import yaml

from automed import api
from automed.privacy import Redactor, load_key, pseudonym, public_uri, strip_credentials
from automed.testing.synthetic import make_dataset
from tests.conftest import automed_ui

KEY = b"k" * 32


def _redactor(**kw: bool) -> Redactor:
    return Redactor.build(
        KEY,
        ["MRN12345670", "MRN12345671", "7", "case.1"],
        {"dataset": Path("/data/site/Smith"), "workdir": Path("/scratch/w")},
        **kw,
    )


def test_pseudonyms_are_keyed_stable_and_not_plain_hashes(tmp_path: Path) -> None:
    key = load_key(tmp_path / "pseudonym.key")
    assert load_key(tmp_path / "pseudonym.key") == key and len(key) == 32
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    a = pseudonym(key, "MRN12345670")
    assert a == pseudonym(key, "MRN12345670") and a.startswith("case-") and "12345670" not in a
    assert a != pseudonym(os.urandom(32), "MRN12345670")  # another key: another pseudonym
    assert pseudonym(key, "MRN12345670") != pseudonym(key, "MRN12345671")


def test_json_values_keys_and_paths() -> None:
    r = _redactor()
    got = r.value(
        {
            "source": "/data/site/Smith/dataset.json",
            "cases": [{"case_id": "7", "label_voxels": {"1": 3}}],
            "folds": [{"train": ["MRN12345670", "7"], "val": ["case.1"]}],
            "members": ["/scratch/w"],
            "file": "validation/MRN12345671.nii.gz",
            "channel": "/data/site/Smith/imagesTr/MRN12345670_0000.nii.gz",
            "epochs": "7",  # a weak ID outside an ID field stays (it is a number here)
            "MRN12345671": {"dice": 0.5},
        }
    )
    text = json.dumps(got)
    assert "MRN" not in text and "Smith" not in text and "/scratch" not in text
    assert got["cases"][0]["case_id"] == r.case("7") and got["epochs"] == "7"
    assert got["folds"][0]["val"] == [r.case("case.1")]
    assert got["source"] == "<dataset>/dataset.json" and got["members"] == ["<workdir>"]
    assert got["file"] == f"validation/{r.case('MRN12345671')}.nii.gz"
    assert got["channel"] == f"<dataset>/imagesTr/{r.case('MRN12345670')}_0000.nii.gz"


def test_csv_text_and_keep_case_ids() -> None:
    r = _redactor()
    csv = r.csv_text("case,fold,label\nMRN12345670,0,1\n7,7,1\n")
    assert "MRN" not in csv and csv.splitlines()[2] == f"{r.case('7')},7,1"
    card = r.text(
        "Parity on case `MRN12345670` after 7 epochs, work dir /scratch/w/export (MRN12345671.nii.gz)"
    )
    assert "MRN" not in card and "after 7 epochs" in card and "<workdir>/export" in card
    kept = _redactor(keep_case_ids=True)
    assert kept.value({"case_id": "MRN12345670", "p": "/scratch/w/x"}) == {
        "case_id": "MRN12345670",
        "p": "<workdir>/x",
    }


def test_free_text_errors_lose_every_path_and_id() -> None:
    # a trial's error message goes to an MLflow tag: every folder, a cache file's ID and a KeyError's ID
    r = _redactor()
    msg = (
        "No such file or directory: '/scratch/w/preprocessed/3d_fullres/MRN12345670.data.npy' "
        "(also /scratch/w/x and /data/site/Smith/MRN12345671_0000.nii.gz); KeyError: 'MRN12345671'"
    )
    got = r.text(msg)
    assert "MRN" not in got and "/scratch" not in got and "Smith" not in got, got
    assert f"<workdir>/preprocessed/3d_fullres/{r.case('MRN12345670')}.data.npy" in got
    assert r.value("/scratch/w/a + /scratch/w/b") == "<workdir>/a + <workdir>/b"  # a pair of members
    assert r.text("checkpoint_7.pt after 7.5 epochs") == "checkpoint_7.pt after 7.5 epochs"  # weak IDs stay
    # a folder the redactor does not know (images kept outside the dataset's folder) keeps only the file name
    assert (
        r.message("cannot read /mnt/Jones/img/MRN12345670.nii.gz")
        == f"cannot read …/{r.case('MRN12345670')}.nii.gz"
    )
    assert r.message(msg) == got and r.text("</div> /mnt/x/y") == "</div> /mnt/x/y"  # pages, texts as before
    # punctuation around an ID or a folder, automed's own "found VALUE." errors, a key=value, an ID with a dot
    for raw in ("case MRN12345671: shape mismatch", "failed on MRN12345671.", "case=MRN12345671 failed",
                "cannot read MRN12345671.pkl", "a/case.1.data.npy", "lock /scratch/w: busy",
                "/scratch/w/.MRN12345670.data.4242.npy"):  # fmt: skip
        out = r.message(raw)
        assert "MRN" not in out and "scratch" not in out and "case.1" not in out, (raw, out)
    assert r.value("/scratch/w + /data/site/Smith, x") == "<workdir> + <dataset>, x"
    assert r.value("/scratch/w2/x") == "/scratch/w2/x"  # a longer folder name is another folder
    for raw, want in [
        ("<p>/mnt/Jones/x.nii.gz</p>", "<p>…/x.nii.gz</p>"),
        ("file:///mnt/Jones/x.nii.gz", "file:…/x.nii.gz"),
        ("path=/mnt/Jones/img/x.nii.gz", "path=…/x.nii.gz"),
        ("in '/mnt/site/Jones/'", "in '…'"),
        (r"cannot read C:\Users\Jones\MRN12345670.nii.gz", f"cannot read …\\{r.case('MRN12345670')}.nii.gz"),
    ]:
        assert r.message(raw) == want, (raw, r.message(raw))


def test_numbers_beside_numeric_ids_stay_numbers() -> None:
    r = Redactor.build(KEY, ["10234"], {})
    assert r.text("volume 10234.5 ml, case 10234, file 10234.nii.gz") == (
        f"volume 10234.5 ml, case {r.case('10234')}, file {r.case('10234')}.nii.gz"
    )


def test_a_short_numeric_id_in_a_path_before_punctuation_is_replaced() -> None:
    """automed's errors read "PATH: rule": the ':' after a file name had kept a short numeric case ID (4711, too
    weak to replace as a word) in a failed sweep trial's error tag, while the same path elsewhere lost it."""
    d = Path("/data/site/Smith")
    r = Redactor.build(KEY, ["4711", "0042"], {"dataset": d})
    for raw in (f"- {d}/labelsTr/4711.nii.gz: images must be readable", f"read {d}/imagesTr/0042_0000.nii.gz.",
                f"(/mnt/x/4711.nii.gz), {d}/4711.nii.gz;"):  # fmt: skip
        out = r.message(raw)
        assert "4711" not in out and "0042" not in out and "Smith" not in out, (raw, out)
    pseudo = r.case("4711")
    assert r.message(f"{d}/labelsTr/4711.nii.gz: bad") == f"<dataset>/labelsTr/{pseudo}.nii.gz: bad"
    assert r.text("ran 4711 epochs: 0042.") == "ran 4711 epochs: 0042."  # no path, no file ending: numbers


def test_start_run_tags_are_redacted_like_set_tags(tmp_path: Path) -> None:
    from automed.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "x", _redactor())
    run = tracker.start_run(
        "select", tags={"chosen": "/scratch/w/a + /scratch/w/b", "automed_key": "t1/fold0"}
    )
    tags = tracker.client.get_run(run).data.tags
    assert tags["chosen"] == "<workdir>/a + <workdir>/b" and tags["automed_key"] == "t1/fold0"
    assert tracker.find_run("t1/fold0") is not None


def test_a_failed_trials_error_tag_is_redacted() -> None:
    from types import SimpleNamespace

    from automed.search.engine import TrialOutcome
    from automed.workflow.sweep_stages import _mark_stopped

    tags: dict[str, dict[str, str]] = {}
    tracker = SimpleNamespace(
        redactor=_redactor(),
        find_run=lambda key, parent: SimpleNamespace(info=SimpleNamespace(run_id="r1")),
        set_tags=lambda rid, t: tags.setdefault(rid, {}).update(t),
        client=SimpleNamespace(search_runs=lambda *a, **k: []),
        end_run=lambda rid, status: None,
        experiment_id="0",
    )
    error = "KeyError: 'MRN12345670' reading /mnt/Jones/img/MRN12345671.nii.gz"
    _mark_stopped(tracker, "sweep", [TrialOutcome("t1", "error", error)])
    assert tags["r1"]["screen.outcome"] == "error"
    assert "MRN" not in tags["r1"]["error"] and "Jones" not in tags["r1"]["error"], tags


def test_option_files_keep_their_names_only() -> None:
    from automed.workflow.disclosure import public_options

    got = public_options(
        {"preset": "/site/Smith/presets/gpu.yaml", "space": "default", "folds": 5, "grid": None,
         "config": r"C:\site\Smith\cfg.yaml"}
    )  # fmt: skip
    assert got == {"preset": "gpu.yaml", "space": "default", "folds": 5, "grid": None, "config": "cfg.yaml"}


def test_candidate_names_are_unique_without_local_paths() -> None:
    from automed.select.names import candidate_names

    assert candidate_names([Path("/x/a/w3d"), Path("/x/b/w2d")]) == ["w3d", "w2d"]
    assert candidate_names([Path("/x/Smith/train"), Path("/x/Jones/train")]) == ["train", "train-2"]
    # a number already taken by another work dir's own name is skipped
    got = candidate_names([Path("/x/a/train"), Path("/y/a/train"), Path("/z/train-2")])
    assert got == ["train", "train-2", "train-2-2"] and len(set(got)) == 3
    assert candidate_names([Path()]) == [Path.cwd().name or "workdir"]


@pytest.mark.parametrize(
    ("uri", "public", "stored"),
    [
        (
            "http://alice:s3cret@mlflow.example:5000/",
            "http://mlflow.example:5000/",
            "http://mlflow.example:5000/",
        ),
        (
            "https://mlflow.example/api?token=abc&x=1",
            "https://mlflow.example/api?token=***&x=1",
            "https://mlflow.example/api?token=***&x=1",
        ),
        ("sqlite:////home/alice/mlflow.db", "sqlite:///…/mlflow.db", "sqlite:////home/alice/mlflow.db"),
        ("databricks", "databricks", "databricks"),
    ],
)
def test_tracking_uri_credentials(uri: str, public: str, stored: str) -> None:
    assert public_uri(uri) == public and strip_credentials(uri) == stored
    assert "s3cret" not in public_uri(uri) + strip_credentials(uri)


def _record_number_dataset(site: Path) -> Path:
    """Cases named like record numbers, listed in dataset.json by absolute path."""
    src = make_dataset(site / "exports", n_cases=4, shape=(12, 16, 14), seed=1)
    meta = json.loads((src / "dataset.json").read_text())
    for i, t in enumerate(meta["training"]):
        for k in ("image", "label"):
            old = src / t[k]
            new = old.with_name(f"MRN1234567{i}.nii.gz")
            old.rename(new)
            t[k] = str(new.resolve())
    (src / "dataset.json").write_text(json.dumps(meta))
    return src


def _leaks(text: str, forbidden: list[str], binary: bool = False) -> list[str]:
    """The forbidden strings in ``text`` (case-insensitive; exact in binary files, where 'mrn' occurs by chance)."""
    if binary:
        return [f for f in forbidden if f in text]
    return [f for f in forbidden if f.lower() in text.lower()]


BINARY = (".pt", ".onnx", ".bin", ".png", ".npz", ".npy")


@pytest.mark.slow
def test_no_case_id_or_local_path_leaves_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, work, store = tmp_path / "site_Smith_John", tmp_path / "work_Smith", tmp_path / "store"
    ds = _record_number_dataset(site)
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\n")
    api.train(
        ds, work / "W", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False, overlays=2
    )
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "name": "tiny",
                "fixed": {"epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1, "num_workers": 0},
                "parameters": {
                    "batch_size_scale": {"type": "float", "low": 0.5, "high": 1.0, "default": 1.0}
                },
            }
        )
    )
    api.sweep(
        ds, work / "S", space=space, trials=1, folds=2, promote=1, engine="optuna", tracking_uri=uri,
        workers=0, show_progress=False,
    )  # fmt: skip
    api.select([work / "W"], work / "sel", inference=False)
    # a sweep's trials log their selection to the sweep's store: it had been ./mlflow.db wherever select ran
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (trial,) = sorted((work / "S" / "trials").glob("t*"))
    api.select([trial], work / "sel_trials", inference=False, show_progress=False)
    assert not list(elsewhere.iterdir())
    api.export(work / "W", work / "bundle")
    api.package(work / "W", work / "cube", export_dir=work / "bundle")

    forbidden = ["MRN1234567", "12345670", "Smith", str(work), str(site)]
    leaks: dict[str, list[str]] = {}
    scanned = 0
    for root in (store, work / "bundle", work / "cube"):
        for f in sorted(root.rglob("*")):
            if not f.is_file() or f.name == "mlflow.db":
                continue
            if f.name.endswith(".tar.gz"):
                with tarfile.open(f) as tar:
                    for m in tar.getmembers():
                        x = tar.extractfile(m)
                        if x is not None:
                            text = m.name + x.read().decode("utf-8", "replace")
                            if found := _leaks(text, forbidden, m.name.endswith(BINARY)):
                                leaks[f"{f}:{m.name}"] = found
                continue
            text = str(f.relative_to(root)) + "\n" + f.read_bytes().decode("utf-8", "replace")
            scanned += 1
            if found := _leaks(text, forbidden, f.name.endswith(BINARY)):
                leaks[str(f)] = found
    with sqlite3.connect(store / "mlflow.db") as db:  # params, tags, inputs, model versions and descriptions
        dump = "\n".join(db.iterdump())
    if found := _leaks(dump, forbidden):
        leaks["mlflow.db"] = found
    assert scanned > 40 and "registered_model" in dump and "MODEL_CARD" not in leaks
    assert not leaks, "\n".join(f"{k}: {v}" for k, v in leaks.items())
    assert any(p.name.startswith("case-") for p in store.rglob("overlays/*.png"))  # opted in, pseudonymised
    # the user's own work dir keeps the real IDs (nothing left the machine there)
    assert "MRN12345670" in (work / "W" / "splits.json").read_text()


@pytest.mark.slow
def test_keep_case_ids_sends_them_on_request(tmp_path: Path) -> None:
    ds = _record_number_dataset(tmp_path / "site")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    api.train(
        ds, tmp_path / "W", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False,
        register=False, keep_case_ids=True,
    )  # fmt: skip
    logged = [p.read_text() for p in (tmp_path / "mlruns").rglob("splits.json")]
    assert logged and "MRN12345670" in logged[0] and str(tmp_path / "site") not in logged[0]


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_never_logged_or_stored(tmp_path: Path) -> None:
    """Train against an MLflow server (`automed ui`) addressed as http://alice:s3cret@127.0.0.1:PORT."""
    with automed_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "ui.log") as port:
        ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=1)
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
        res = api.train(
            ds, tmp_path / "W", config=cfg, folds=2, tracking_uri=f"http://alice:s3cret@127.0.0.1:{port}",
            workers=0, show_progress=False,
        )  # fmt: skip
    assert res.registered is not None
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        dump = "\n".join(db.iterdump())
    assert "s3cret" not in dump and "alice" not in dump and "options.tracking_uri" in dump
    for f in (res.workdir / "tracking.json", res.workdir / "train_config.json"):
        assert "s3cret" not in f.read_text(), f
    assert json.loads((res.workdir / "tracking.json").read_text())["uri"] == f"http://127.0.0.1:{port}"


def test_library_telemetry_is_off_and_nothing_lands_in_the_home_folder(tmp_path: Path) -> None:
    """onnxruntime, MLflow and Ray read opt-out variables (set when automed is imported, unless the user set them);
    OpenVINO's import sent Google Analytics events and wrote a client ID under ~/intel: declined, nothing written.
    AUTOMED_ALLOW_TELEMETRY=1 leaves the libraries alone."""
    import subprocess
    import sys

    code = (
        "import json, os, automed; from automed.runtime.telemetry import openvino_off; openvino_off(); "
        "import openvino as ov; ov.Core(); "
        "print(json.dumps({k: os.environ.get(k) for k in ('ORT_DISABLE_TELEMETRY', 'MLFLOW_DISABLE_TELEMETRY', "
        "'RAY_USAGE_STATS_ENABLED')}))"
    )
    env = {k: v for k, v in os.environ.items() if "TELEMETRY" not in k and k not in ("DO_NOT_TRACK", "CI")}
    env["RAY_USAGE_STATS_ENABLED"] = "1"  # a user's own setting is kept
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path)}, capture_output=True,
                         text=True, check=True)  # fmt: skip
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "ORT_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "1",
    }
    assert not list(tmp_path.rglob("*"))  # no ~/intel/openvino_ga_cid, no stats
    home = tmp_path / "allowed"
    home.mkdir()
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(home), "AUTOMED_ALLOW_TELEMETRY": "1"},
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1])["ORT_DISABLE_TELEMETRY"] is None


def test_a_folder_per_class_dataset_is_named_dataset_not_by_its_folder(tmp_path: Path) -> None:
    """``DIR/<class>/<images>``: the dataset is the folder itself, so its own name (which may be anything the user
    typed) becomes ``<dataset>`` as a dataset.json's folder does."""
    import numpy as np
    import SimpleITK as sitk

    from automed.data.dataset import load_dataset
    from automed.workflow.disclosure import redactor_for

    root = tmp_path / "Doe_John_MRN-777700"
    for cls in ("normal", "pneumonia"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            sitk.WriteImage(
                sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(root / cls / f"{cls}{i}.png")
            )
    ds = load_dataset(root)
    red = redactor_for([], ds=ds)
    assert red.text(f"dataset at {root}") == "dataset at <dataset>"
    assert "Doe_John" not in red.text(str(root / "normal" / "normal0.png"))
