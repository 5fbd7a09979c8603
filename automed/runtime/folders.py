"""Which folders under an input folder discovery reads for DICOM (:mod:`.inputs`), at any depth: a PACS or CD export
nests its series as ``PATIENT/STUDY/SERIES/IM0001``. Each folder is read once: a sub-folder that is a link to the
input folder or a folder above it would loop, and one to a folder read already would predict its cases twice; such
links are not followed, and named with why (as are folders that cannot be listed)."""

from __future__ import annotations

from pathlib import Path


def entries(folder: Path) -> list[Path]:
    """``folder``'s entries, sorted, without hidden ones: macOS writes ``.DS_Store`` and an AppleDouble ``._NAME`` (not
    an image) beside each file copied to a foreign disk, and these are no inputs."""
    return sorted(f for f in folder.iterdir() if not f.name.startswith("."))


def folder_id(root: Path, folder: Path, *more: str) -> str:
    """The case ID of ``folder`` (under ``root``) or of a file in it (``more``): the relative path's parts joined by
    ``_`` (``patient1/study1/series1`` -> ``patient1_study1_series1``): one file name, never a path, deterministic.
    Two folders joining to one ID (``a_b/c``, ``a/b_c``) are refused by the callers' check of unique IDs."""
    return "_".join((*folder.relative_to(root).parts, *more))


def _identity(path: Path) -> tuple[int, int] | str:
    """The folder itself, whatever the path to it (a link, a bind mount): device and inode; its resolved path where
    the file system gives no inode numbers (0: some network and Windows shares)."""
    st = path.stat()
    return (st.st_dev, st.st_ino) if st.st_ino else str(path.resolve())


def sub_folders(root: Path) -> tuple[list[Path], dict[Path, str]]:
    """The folders under ``root`` at any depth (not ``root``), sorted (each before what it holds), each folder once;
    and the sub-folders not read, each with why. Folders reached without a link come first, so a folder keeps its own
    name when a link elsewhere points to it too; links are then followed in name order unless they point to ``root``
    or a folder above it (a loop) or to a folder read already (its cases twice)."""
    if not root.is_dir():
        return [], {}
    top = _identity(root)
    above = {_identity(p) for p in root.resolve().parents}
    read_as: dict[tuple[int, int] | str, Path] = {top: root}
    found: list[Path] = []
    skipped: dict[Path, str] = {}
    links: list[Path] = []

    def not_read(e: Path) -> str | None:  # why the folder at e is not read (again)
        key = _identity(e)
        if key == top or key in above:
            return "a link to the input folder or a folder above it: not followed, it would loop"
        if (same := read_as.get(key)) is not None:
            return _same(root, same)
        read_as[key] = e
        return None

    def visit(folder: Path) -> None:
        try:
            inside = [e for e in entries(folder) if e.is_dir()]
        except OSError as exc:
            skipped[folder] = f"cannot be listed: {exc.strerror or exc}"
            return
        found.append(folder)
        for e in inside:
            if e.is_symlink():
                links.append(e)
            elif (why := not_read(e)) is not None:  # a bind mount
                skipped[e] = why
            else:
                visit(e)

    visit(root)
    while links:
        link = min(links)
        links.remove(link)
        if (why := not_read(link)) is not None:
            skipped[link] = why
        else:
            visit(link)
    return sorted(f for f in found if f != root), skipped


def _same(root: Path, folder: Path) -> str:
    where = "the input folder" if folder == root else f"{folder.relative_to(root).as_posix()}/"
    return f"the same folder as {where}, read once there"
