"""Atomic writes and hashing: an interrupted stage leaves the old output or none, never half a file."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decode_text(data: bytes, source: str | Path, encoding: str = "utf-8") -> str:
    """Bytes of a text input -> str, or an `InputFormatError` naming the file, the line of the first bad byte
    and the encoding expected. A byte-order mark is refused by name (the readers would take it for data)."""
    from star_repro.errors import InputFormatError

    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise InputFormatError(source, 1, f"the file starts with a byte-order mark: expected {encoding} text "
                                          "without one")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFormatError(source, line, f"byte 0x{data[exc.start]:02x} is not valid {encoding} text "
                               f"(a binary file or another encoding?): expected {encoding}") from None


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """A text input file, decoded by `decode_text` (errors name the file, line and encoding)."""
    with open(path, "rb") as fh:
        return decode_text(fh.read(), path, encoding)


def canonical_json(obj: Any) -> str:
    """Sorted keys, indent 2, UTF-8 characters kept, trailing newline: stable bytes for hashing and diffs."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
_RANDOM = r"[a-z0-9_]{8}"  # tempfile's random part
_RUN_TOKEN = os.urandom(4).hex()  # tells this process from an earlier one that had the same pid (containers)


def _tmp_prefix(path: Path) -> str:
    """Temporary siblings of `path` are named `.{name}.{host}-{pid}-{token}.{random}.tmp`, so that a later run
    can tell stale ones (same output, same host, a process that no longer runs) from live ones."""
    return f".{path.name}.{_HOST}-{os.getpid()}-{_RUN_TOKEN}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary siblings an interrupted write of `path` left behind, and only those: names made
    by `atomic_dir`/`atomic_path` for this very output, on this host, by a process that is gone (or by the
    older pid-less naming). Others' outputs and live writers' temporaries are never touched."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.escape(path.name)
    ours = re.compile(rf"\.{name}\.{re.escape(_HOST)}-(\d+)-([0-9a-f]{{8}})\.{_RANDOM}\.tmp")
    legacy = re.compile(rf"\.{name}\.{_RANDOM}\.tmp")
    removed = []
    for entry in path.parent.iterdir():
        m = ours.fullmatch(entry.name)
        if m:
            pid = int(m.group(1))
            if (pid == os.getpid() and m.group(2) == _RUN_TOKEN) or (pid != os.getpid() and _pid_alive(pid)):
                continue  # this process's own, or another live writer's
        if not (m or legacy.fullmatch(entry.name)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename. Stale temporaries
    of the same output from interrupted runs are removed first (`remove_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, canonical_json(obj))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a whole output folder in a temporary sibling, then swap it in (the old one is removed only then).
    Stale temporary folders of the same output from interrupted runs are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def tsv_text(header, rows) -> str:
    """Tab-separated text with a header; floats to 6 significant digits, None as empty."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    return buf.getvalue()


def check_finite(obj, what: str | Path) -> None:
    """Raise `StarReproError` naming `what` and the entry when an array (NumPy or torch, alone or inside dicts,
    lists and tuples) holds a NaN or an infinity: every array a stage publishes passes through here."""
    import numpy as np

    from star_repro.errors import StarReproError

    def walk(x, key: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{key}[{i}]")
        elif hasattr(x, "detach") and hasattr(x, "is_floating_point"):  # torch tensor
            if x.is_floating_point() or x.is_complex():
                import torch

                bad = int((~torch.isfinite(x.detach())).sum())
                if bad:
                    raise StarReproError(f"{what}: refusing to write {key or 'the array'}: {bad} of {x.numel()} "
                                         "values are NaN or infinite (diverged training or overflowing input?)")
        elif isinstance(x, np.ndarray) and (np.issubdtype(x.dtype, np.floating)
                                            or np.issubdtype(x.dtype, np.complexfloating)):
            bad = int(x.size - np.count_nonzero(np.isfinite(x)))
            if bad:
                raise StarReproError(f"{what}: refusing to write {key or 'the array'}: {bad} of {x.size} values "
                                     "are NaN or infinite")

    walk(obj, "")


def save_torch_atomic(obj, path: str | Path) -> None:
    """torch.save into `path` atomically, through an open file: given a path, torch names the archive's root
    folder after the (temporary, random) file name, so equal weights gave different bytes and hashes.
    Non-finite tensors are refused (`check_finite`)."""
    import torch

    check_finite(obj, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)


def save_npy_atomic(path: str | Path, arr) -> None:
    """np.save atomically; a non-finite float array is refused (`check_finite`)."""
    import numpy as np

    check_finite(np.asarray(arr), path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
