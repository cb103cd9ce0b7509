"""The image's contents without a Docker engine: the build context `.dockerignore` lets through, the
files the Dockerfile's COPY instructions take from it, and its RUN/HEALTHCHECK/ENTRYPOINT/CMD.

`DockerIgnore` follows Docker's rules (moby/patternmatcher): patterns are
cleaned paths relative to the context, `*` and `?` stay within a path
segment, `**` spans any number of them, a `!` pattern re-includes, the last
pattern matching a path or one of its parent folders decides.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.compose.conftest import PROJECT
from tests.compose.test_dockerfile import instructions


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1].replace("[!", "[^"), end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    patterns: tuple[tuple[bool, re.Pattern[str], str], ...]  # (re-include?, regex, text)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        found = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            body = posixpath.normpath(line[1:] if include else line).lstrip("/")
            found.append((include, _regex(body), body))
        return cls(tuple(found))

    def excluded(self, rel: str) -> bool:
        """Whether the context leaves out `rel` (a path relative to the context, '/'-separated)."""
        parts = rel.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for include, regex, _ in self.patterns:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not include
        return excluded

    def may_hold_included(self, rel_dir: str) -> bool:
        """Whether some re-include pattern could match below an excluded folder (else the walk skips it)."""
        return any(include and (text.startswith((rel_dir + "/", "**")) or text == rel_dir)
                   for include, _, text in self.patterns)


def build_context(root: Path = PROJECT) -> set[str]:
    """Every file of the build context, as '/'-separated paths relative to the project."""
    ignore = DockerIgnore.parse((root / ".dockerignore").read_text(encoding="utf-8"))
    files: set[str] = set()

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                if ignore.excluded(rel) and not ignore.may_hold_included(rel):
                    continue
                walk(entry)
            elif not ignore.excluded(rel):
                files.add(rel)

    walk(root)
    return files


@dataclass(frozen=True)
class Copy:
    stage: str
    sources: tuple[str, ...]
    dest: str


@dataclass(frozen=True)
class Image:
    """What the Dockerfile does, read from it."""

    copies: tuple[Copy, ...]
    runs: tuple[tuple[str, str, str], ...]  # (stage, workdir, shell command)
    env: dict[str, str]  # the runtime stage's ENV
    healthcheck: list[str]
    entrypoint: list[str]
    cmd: list[str]
    venv: str  # the folder the build stage installs into (/opt/metropole)


def read_image() -> Image:
    stage, workdir = "", "/"
    copies, runs = [], []
    env: dict[str, str] = {}
    healthcheck: list[str] = []
    entrypoint: list[str] = []
    cmd: list[str] = []
    for op, arg in instructions():
        if op == "FROM":
            parts = arg.split()
            stage = parts[-1] if len(parts) >= 3 and parts[-2].upper() == "AS" else parts[0]
            workdir, env = "/", {}
        elif op == "WORKDIR":
            workdir = posixpath.join(workdir, arg)
        elif op == "COPY" and not arg.startswith("--from"):
            *sources, dest = shlex.split(arg)
            copies.append(Copy(stage, tuple(sources), posixpath.join(workdir, dest)))
        elif op == "RUN":
            runs.append((stage, workdir, arg))
        elif op == "ENV":
            for name, value in re.findall(r'(\w+)=("[^"]*"|\S+)', arg):
                env[name] = value.strip('"').replace("$PATH", "{PATH}")
        elif op == "HEALTHCHECK":
            healthcheck = json.loads(arg.split("CMD", 1)[1].strip())
        elif op == "ENTRYPOINT":
            entrypoint = json.loads(arg)
        elif op == "CMD":
            cmd = json.loads(arg)
    venv = next(m.group(1) for _, _, r in runs if (m := re.search(r"python -m venv (\S+)", r)))
    return Image(tuple(copies), tuple(runs), env, healthcheck, entrypoint, cmd, venv)


def assemble(image: Image, context: set[str], root: Path, fake_root: Path) -> None:
    """Copy what each COPY takes from the context to `fake_root` + its destination (the image's file system).

    As Docker copies: a folder's contents into the destination folder; a file
    into a destination ending in `/` (or one of several sources) by its name,
    else to the destination path itself.
    """
    for copy in image.copies:
        for source in copy.sources:
            source = source.rstrip("/")
            dest = fake_root / copy.dest.lstrip("/")
            if (root / source).is_dir():
                taken = sorted(f for f in context if f.startswith(source + "/"))
                targets = [(rel, dest / rel[len(source) + 1:]) for rel in taken]
            else:
                taken = [source] if source in context else []
                as_folder = copy.dest.endswith("/") or len(copy.sources) > 1
                targets = [(source, dest / posixpath.basename(source) if as_folder else dest)]
            if not taken:
                raise AssertionError(f"COPY {source}: nothing of it is in the build context (.dockerignore)")
            for rel, target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, target)
