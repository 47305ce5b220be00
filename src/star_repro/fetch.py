"""`star-repro fetch`: download the public inputs a user may fetch for themselves, verified by sha256.

Opt-in only: neither `dvc repro` nor Snakemake ever calls it (the DAG reads local files and says which command
fills a gap). What it fetches:
- OpenAI's CLIP ViT-L/14@336px weights (the paper's text encoder), from the URL open_clip's `openai` tag for
  `ViT-L-14-336` names; OpenAI's storage path carries the file's sha256, which is pinned here.
- The STAR authors' released 6-part descriptions for NTU RGB+D 120 (NTU-60 reads its first 60 classes) and
  PKU-MMD I, from their repository at a pinned commit; each file's sha256 is pinned and the file is then imported
  into the `imported-star` description set that the paper profiles read.

Downloads go to `<dest>.part` and resume from its length (HTTP Range) after a cut connection or a rerun; the
file is placed at `<dest>` (an atomic rename) only when its sha256 matches. A mismatch deletes the partial file
and places nothing.
"""
from __future__ import annotations

import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from star_repro.errors import StarReproError
from star_repro.io import sha256_file

# OpenAI's CLIP ViT-L/14@336px (open_clip: ViT-L-14-336, pretrained="openai"); the sha256 is the URL's folder.
CLIP_FILE = "ViT-L-14-336px.pt"
CLIP_SHA256 = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
CLIP_URL = f"https://openaipublic.azureedge.net/clip/models/{CLIP_SHA256}/{CLIP_FILE}"
# The authors' repository and the commit whose text/ files are fetched. STAR_SPEC read the code at 917ca67; the
# description files were last changed at this commit (the public index's stored version, same length).
STAR_REPO = "cseeyangchen/STAR"
STAR_DESCRIPTIONS_COMMIT = "79e500c92138180c6b9001e6c933723e3380782d"
STAR_DESCRIPTIONS_SET = "imported-star"
# cache dataset -> (file name under text/ in the authors' repository, its sha256)
STAR_DESCRIPTION_FILES = {
    "ntu120": ("ntu120_part_descriptions.txt", "162676e312816dea3a6a3f6f9957d5c2d2a8345067b7fc0c531fb7f6f656ca65"),
    "pku1": ("pkuv1_part_descriptions.txt", "0920f186c6026ddfe8da54aca7cc5e5f39958da67533c81fed85f45b86113c99"),
}
RELEASES_DIR = Path("data/releases/star")
WHAT = ("clip", "descriptions")
CHUNK = 1 << 16


class FetchError(StarReproError):
    """A download could not be completed or verified; nothing was placed at the destination."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch: where from, its pinned sha256, and where the pipeline looks for it."""

    what: str
    url: str
    sha256: str
    dest: Path


def star_description_url(file_name: str, commit: str = STAR_DESCRIPTIONS_COMMIT) -> str:
    return f"https://raw.githubusercontent.com/{STAR_REPO}/{commit}/text/{file_name}"


def remotes(what: tuple[str, ...] = WHAT, *, weights_dir: str | Path | None = None,
            releases_dir: str | Path = RELEASES_DIR, mirror: str | None = None) -> list[Remote]:
    """The files `fetch` downloads for `what`; `mirror` replaces each URL's folder (same file names)."""
    from star_repro.text.encoders import WEIGHTS_DIR

    out = []
    if "clip" in what:
        out.append(Remote("clip", CLIP_URL, CLIP_SHA256, Path(weights_dir or WEIGHTS_DIR) / CLIP_FILE))
    if "descriptions" in what:
        for ds, (name, sha) in STAR_DESCRIPTION_FILES.items():
            out.append(Remote(f"descriptions:{ds}", star_description_url(name), sha, Path(releases_dir) / name))
    if mirror:
        out = [Remote(r.what, mirror.rstrip("/") + "/" + r.url.rsplit("/", 1)[1], r.sha256, r.dest) for r in out]
    return out


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _open(url: str, start: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "star-repro-fetch",
                                               **({"Range": f"bytes={start}-"} if start else {})})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs of the pinned releases


def _write_error(part: Path, exc: OSError) -> FetchError:
    """A local write failure (disk full, no permission, a folder in the way): not retried, named."""
    return FetchError(f"{part}: cannot write the download ({exc.strerror or exc}); free space or fix the "
                      "folder's permissions, then run the command again (it resumes from what is there)")


def _transfer(url: str, part: Path, timeout: float, quiet: bool) -> None:
    """Append the rest of `url` to `part` (from its current length); raises on a cut connection."""
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the partial file already holds everything: verify it
            return
        raise
    with resp:
        if start and resp.status != 206:  # the server ignored Range: start again
            _say(f"  {url}: server does not resume; downloading from the start", quiet)
            start = 0
        length = (resp.headers.get("Content-Length") or "").strip()
        total = start + int(length) if length.isdigit() else None  # absent or malformed: read to the end
        done, last = start, time.monotonic()
        try:
            fh = open(part, "ab" if start else "wb")
        except OSError as exc:
            raise _write_error(part, exc) from None
        with fh:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                try:
                    fh.write(block)
                except OSError as exc:
                    raise _write_error(part, exc) from None
                done += len(block)
                if time.monotonic() - last > 2.0:
                    last = time.monotonic()
                    shown = f"{done / 1e6:.1f}" + (f" / {total / 1e6:.1f}" if total else "")
                    _say(f"  {part.name}: {shown} MB", quiet)
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise _write_error(part, exc) from None
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)


def download(url: str, dest: str | Path, sha256: str, *, timeout: float = 60.0, attempts: int = 5,
             backoff: float = 2.0, quiet: bool = False) -> str:
    """Download `url` to `dest`, resuming `<dest>.part`, and place it only when its sha256 is `sha256`.

    Returns 'present' (dest already verified), 'downloaded'. Raises FetchError on a hash mismatch (the partial
    file is deleted, nothing placed) or when the server cannot be reached or keeps failing after `attempts`.
    """
    dest = Path(dest)
    if dest.is_file():
        got = sha256_file(dest)
        if got == sha256:
            return "present"
        raise FetchError(f"{dest} exists but its sha256 is {got}, expected {sha256}: it is not the pinned "
                         f"file; move or delete it and run the command again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, timeout, quiet)
            break
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; nothing placed at {dest}") from None
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            last_error = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
        have = part.stat().st_size if part.exists() else 0
        if attempt < attempts:
            _say(f"  {dest.name}: {last_error}; retrying (attempt {attempt + 1} of {attempts}, resuming at "
                 f"{have} bytes)", quiet)
            time.sleep(backoff * 2 ** (attempt - 1))
    else:
        have = part.stat().st_size if part.exists() else 0
        kept = f"; {have} bytes kept in {part} (the next run resumes)" if have else ""
        raise FetchError(f"could not download {url} after {attempts} attempt(s): {last_error}. Are you offline? "
                         f"`star-repro fetch` needs internet access to the URL{kept}; or put the file at {dest} "
                         f"yourself (sha256 {sha256})")
    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise FetchError(f"{url}: downloaded file has sha256 {got}, expected {sha256}; refused and deleted, "
                         f"nothing placed at {dest}")
    os.replace(part, dest)
    return "downloaded"


def import_star_descriptions(releases_dir: str | Path = RELEASES_DIR, cache_root: str | Path | None = None) -> list:
    """Import the fetched (or hand-placed) release files into the `imported-star` set, after a hash check."""
    from star_repro.text.descriptions import DEFAULT_CACHE_ROOT
    from star_repro.text.importers import import_descriptions

    results = []
    for ds, (name, sha) in STAR_DESCRIPTION_FILES.items():
        path = Path(releases_dir) / name
        if not path.is_file():
            raise FetchError(f"{path} not found: run `star-repro fetch descriptions`")
        got = sha256_file(path)
        if got != sha:
            raise FetchError(f"{path}: sha256 {got}, expected the release's {sha}; not imported")
        results.append(import_descriptions(path, "star", ds, partition=6, source_set=STAR_DESCRIPTIONS_SET,
                                           cache_root=cache_root or DEFAULT_CACHE_ROOT, model="gpt-3.5-turbo"))
    return results


def fetch(what: tuple[str, ...] = WHAT, *, weights_dir: str | Path | None = None,
          releases_dir: str | Path = RELEASES_DIR, cache_root: str | Path | None = None, mirror: str | None = None,
          timeout: float = 60.0, attempts: int = 5, backoff: float = 2.0, quiet: bool = False) -> list[str]:
    """Fetch, verify and place every file of `what`; then import the descriptions. Returns one line per file."""
    unknown = [w for w in what if w not in WHAT]
    if unknown:
        raise StarReproError(f"fetch: unknown item(s) {unknown}; expected some of {list(WHAT)}")
    lines = []
    for r in remotes(tuple(what), weights_dir=weights_dir, releases_dir=releases_dir, mirror=mirror):
        _say(f"fetch {r.what}: {r.url} -> {r.dest}", quiet)
        state = download(r.url, r.dest, r.sha256, timeout=timeout, attempts=attempts, backoff=backoff, quiet=quiet)
        lines.append(f"{r.what}: {r.dest} {state} (sha256 {r.sha256[:12]}… verified)")
    if "descriptions" in what:
        for res in import_star_descriptions(releases_dir, cache_root):
            lines.append(f"imported {res.classes} classes into {res.path} ({res.added} added, {res.changed} "
                         f"changed, {res.unchanged} unchanged)")
    return lines
