"""Bring the notebooks of ``manifest.json`` into a cache directory.

How to run (from the repository root)::

    python benchmarks/corpus/fetch_corpus.py --cache ~/.cache/mason-corpus
    MASON_CORPUS_CACHE=~/.cache/mason-corpus python benchmarks/corpus/fetch_corpus.py
    python benchmarks/corpus/fetch_corpus.py --cache DIR --mirror DIR_OF_GIT_COPIES   # offline

The notebooks are other people's code: none of it is in this repository.
The manifest names each one by repository, commit and path; this script
finds a git copy of each repository (``CACHE/git/OWNER+NAME``, or under
``--mirror`` as ``OWNER+NAME`` or ``OWNER+NAME/repo``, bare or not), and
otherwise fetches just that commit from GitHub (a shallow fetch into a
bare repository; needs the network).  It then writes that commit's files to
``CACHE/trees/OWNER+NAME@COMMIT12/``: notebooks run there, next to the
helper modules and data files they open.  Files whose contents the copy
lacks (snapshots may leave out large files) are skipped and counted; a
notebook that needs one fails on its own cell, which the checker counts.

Running it again does nothing for trees that are already complete.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
_DONE = ".mason-corpus-complete"


def cache_dir(arg: str | None) -> Path:
    value = arg or os.environ.get("MASON_CORPUS_CACHE")
    if not value:
        sys.exit("give the cache directory: --cache DIR or MASON_CORPUS_CACHE=DIR")
    return Path(value).expanduser().resolve()


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    with open(path) as f:
        return json.load(f)["notebooks"]


def slug(repo: str) -> str:
    return repo.replace("/", "+")


def tree_dir(cache: Path, repo: str, commit: str) -> Path:
    return cache / "trees" / f"{slug(repo)}@{commit[:12]}"


def _git(git_dir: Path, *args: str, **kwds) -> subprocess.CompletedProcess:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, **kwds)


def _has_commit(git_dir: Path, commit: str) -> bool:
    probe = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    )
    return probe.returncode == 0


def find_git(cache: Path, mirrors: list[Path], repo: str, commit: str) -> Path:
    """A git directory that holds ``commit`` of ``repo``, cloning one if needed."""
    candidates = [cache / "git" / slug(repo)]
    for mirror in mirrors:
        candidates += [mirror / slug(repo) / "repo", mirror / slug(repo)]
    for base in candidates:
        for git_dir in (base, base / ".git"):
            if (git_dir / "HEAD").is_file() and _has_commit(git_dir, commit):
                return git_dir
    # Only the commit we need, without history: GitHub serves a commit by
    # its id to a shallow fetch.
    target = cache / "git" / slug(repo)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", str(target)], check=True)
    _git(target, "fetch", "--quiet", "--depth", "1", f"https://github.com/{repo}.git", commit)
    return target


def export_tree(git_dir: Path, commit: str, dest: Path) -> tuple[int, int]:
    """Write ``commit``'s files under ``dest``; (written, missing) counts."""
    listing = _git(git_dir, "ls-tree", "-r", "-z", commit, capture_output=True).stdout
    files = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, name = record.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob" and mode != b"120000":  # submodules and symlinks: not needed
            files.append((sha, os.fsdecode(name)))
    # One ``cat-file --batch`` for all blobs: "<sha> blob <size>\n<bytes>\n",
    # or "<sha> missing\n" for a blob the copy does not have.
    request = b"".join(sha + b"\n" for sha, _ in files)
    out = _git(git_dir, "cat-file", "--batch", input=request, capture_output=True).stdout
    written = missing = pos = 0
    for _, name in files:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3:
            missing += 1
            continue
        size = int(header[2])
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out[pos : pos + size])
        pos += size + 1
        written += 1
    return written, missing


def ensure_trees(cache: Path, mirrors: list[Path], notebooks: list[dict], quiet=False) -> None:
    wanted = {(nb["repo"], nb["commit"]) for nb in notebooks}
    for repo, commit in sorted(wanted):
        dest = tree_dir(cache, repo, commit)
        if (dest / _DONE).exists():
            continue
        git_dir = find_git(cache, mirrors, repo, commit)
        written, missing = export_tree(git_dir, commit, dest)
        (dest / _DONE).write_text(json.dumps({"written": written, "missing": missing}))
        if not quiet:
            print(f"{repo}@{commit[:12]}: {written} files, {missing} not in the copy -> {dest}")


def notebook_path(cache: Path, nb: dict) -> Path:
    return tree_dir(cache, nb["repo"], nb["commit"]) / nb["path"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="cache directory (default: $MASON_CORPUS_CACHE)")
    parser.add_argument(
        "--mirror",
        action="append",
        default=[],
        type=Path,
        help="a directory of existing git copies (OWNER+NAME[/repo]); repeatable",
    )
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    cache = cache_dir(args.cache)
    notebooks = load_manifest(args.manifest)
    ensure_trees(cache, args.mirror, notebooks)
    absent = [nb["path"] for nb in notebooks if not notebook_path(cache, nb).is_file()]
    print(f"{len(notebooks) - len(absent)} of {len(notebooks)} notebooks in {cache / 'trees'}")
    for path in absent:
        print(f"  missing: {path}")
    return 1 if absent else 0


if __name__ == "__main__":
    sys.exit(main())
