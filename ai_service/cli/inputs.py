"""The inputs of `ai-service predict`: files and folders expanded into an ordered list, each with a stable name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class InputError(Exception):
    """A PATH argument that cannot be used (missing, or a folder without --recursive): nothing has run yet."""


@dataclass(frozen=True)
class Item:
    """One input file: its place in the run, its path as found (the key --resume matches), its relative name."""

    index: int
    path: str
    #: The file's path relative to the folder argument's parent (`photos/a/cat.jpg`), or its name for a file
    #: argument: the history's filename.
    name: str
    #: `name`, made unique in the run (`cat-2.jpg` for a second cat.jpg): where its output image goes.
    target: str


def natural_key(text: str) -> list[int | str]:
    """img2 before img10, as a file browser sorts."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _folder_files(folder: Path) -> list[Path]:
    """Every regular file under `folder`, hidden ones (.DS_Store, .git) left out, in natural order."""
    found = [
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda path: natural_key(path.relative_to(folder).as_posix()))


def collect(paths: list[str], recursive: bool) -> list[Item]:
    """The files the PATH arguments name, in argument order; a folder's files only with --recursive."""
    found: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not recursive:
                raise InputError(f"{raw} is a folder: add --recursive (-r) to predict the files under it")
            top = path.resolve().name or "root"
            found += [(str(file), f"{top}/{file.relative_to(path).as_posix()}") for file in _folder_files(path)]
        elif path.exists():
            found.append((str(path), path.name))
        else:
            raise InputError(f"{raw}: no such file or folder")
    names = unique_names([name for _, name in found])
    return [Item(index, path, name, target) for index, ((path, name), target) in enumerate(zip(found, names))]


def unique_names(names: list[str]) -> list[str]:
    """The same names with a -2, -3 ... suffix on repeats, so two inputs never write the same output file."""
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, number = name, 1
        while candidate.lower() in seen:
            number += 1
            pure = PurePosixPath(name)
            candidate = str(pure.with_name(f"{pure.stem}-{number}{pure.suffix}"))
        seen.add(candidate.lower())
        unique.append(candidate)
    return unique


def batches(items: list[Item], size: int) -> list[list[Item]]:
    """Consecutive groups of `size` items: the unit a worker runs through one predict call."""
    return [items[start : start + size] for start in range(0, len(items), max(1, size))]
