"""What the shared cache of built releases decides: an entry's key, whether its manifest
fits the install at hand, and whether an archive's members may be written.

Pure (hashlib, json, re): the node's adapter (slapfed.node.builtcache) reads and writes
the files. A release's installed software directory holds absolute paths (scripts,
``.installed.cfg``, the generated ``buildout.cfg``), so an archive of it is only ever
unpacked at the very same path, by the same interpreter on the same platform, for the
same profile files: all of it goes into the key, and the manifest repeats what must be
checked again when read (nothing in a cache is trusted because of where it sits).

An archive's members are data, never paths to follow: a name is relative, without
``..``, empty or ``.`` segments, NUL or control characters; a member is a directory, a
regular file or a symbolic link whose target stays inside the software directory (a
relative target resolving below the root, or an absolute one below the directory's own
path); never a hard link, device, FIFO or socket; never below a symbolic link, never
twice. The same rules refuse to write an archive that could not be read back.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

FORMAT = 1
ARCHIVE = "software.tar.gz"
MANIFEST = "manifest.json"
KEY_RE = re.compile(r"[0-9a-f]{64}\Z")
SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
KINDS = ("dir", "file", "symlink")
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f]")


def entry_key(facts: dict) -> str:
    """The key of a built release: sha256 of its facts (release URL, digest of its
    profile files, the generated software buildout, the software directory, platform
    and interpreter), in canonical JSON."""
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s not in ("", ".")]


def _normal_below(base: list[str], target: str) -> list[str] | None:
    """``target`` (relative, '/'-separated) resolved from the directory ``base`` (a list
    of segments below the root); None when it climbs above the root."""
    out = list(base)
    for seg in target.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(seg)
    return out


def name_problem(name: str) -> str | None:
    """Why ``name`` may not be a member's name (None: it may)."""
    if not isinstance(name, str) or not name:
        return "an empty name"
    if _BAD_CHAR.search(name):
        return "a control character in its name"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "an empty, '.' or '..' segment"
    return None


def member_problem(name: str, kind: str, link: str, root: str) -> str | None:
    """Why a member (``kind`` one of dir, file, symlink, or anything else, e.g.
    hardlink, device, fifo) may not be written into the software directory ``root`` (an
    absolute path); None when it may."""
    problem = name_problem(name)
    if problem:
        return problem
    if kind not in KINDS:
        return f"a {kind} (only directories, regular files and symbolic links)"
    if kind != "symlink":
        return None
    if not link or _BAD_CHAR.search(link):
        return "a symbolic link with an empty target or a control character in it"
    parent = name.rstrip("/").split("/")[:-1]
    if link.startswith("/"):
        base = _segments(root)
        target = _normal_below([], link[1:])
        if target is None or target[:len(base)] != base:
            return f"a symbolic link to {link}, outside {root}"
        return None
    if _normal_below(parent, link) is None:
        return f"a symbolic link to {link}, outside {root}"
    return None


@dataclass(frozen=True)
class Member:
    name: str
    kind: str            # dir, file, symlink; anything else is refused
    link: str = ""       # a symbolic link's target


def members_problems(members, root: str) -> list[str]:
    """Every reason (naming the member) why ``members`` may not be written into ``root``;
    [] when all may."""
    problems, seen, links = [], set(), set()
    for m in members:
        name = m.name.rstrip("/") if isinstance(m.name, str) else m.name
        problem = member_problem(m.name, m.kind, m.link, root)
        if problem is None:
            parts = name.split("/")
            if name in seen:
                problem = "a second member of that name"
            elif any("/".join(parts[:i]) in links for i in range(1, len(parts))):
                problem = "a member below a symbolic link"
        if problem:
            problems.append(f"{m.name!r}: {problem}")
            continue
        seen.add(name)
        if m.kind == "symlink":
            links.add(name)
    return problems


@dataclass(frozen=True)
class Manifest:
    key: str
    software_dir: str
    sha256: str
    size: int
    facts: dict
    built_seconds: float = 0.0
    built_by: str = ""

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "key": self.key, "software_dir": self.software_dir,
                           "archive": ARCHIVE, "sha256": self.sha256, "size": self.size,
                           "facts": self.facts, "built_seconds": self.built_seconds,
                           "built_by": self.built_by}, indent=1, sort_keys=True) + "\n"


def read_manifest(raw: bytes, key: str, software_dir: str, facts: dict) -> Manifest | str:
    """The manifest of entry ``key`` if it is one for this install, else why not."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return "its manifest is not JSON"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return "its manifest is not of format 1"
    if data.get("key") != key or data.get("archive") != ARCHIVE:
        return "its manifest names another entry"
    if data.get("software_dir") != software_dir:
        return (f"it was built in {data.get('software_dir')!r}, not {software_dir!r} "
                "(installed software holds absolute paths)")
    if data.get("facts") != facts:
        return "its manifest's facts differ from this install's"
    sha, size = data.get("sha256"), data.get("size")
    if not isinstance(sha, str) or not SHA256_RE.match(sha):
        return "its manifest has no sha256"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "its manifest has no size"
    seconds = data.get("built_seconds", 0.0)
    return Manifest(key, software_dir, sha, size, facts,
                    float(seconds) if isinstance(seconds, (int, float)) else 0.0,
                    str(data.get("built_by", "")))
