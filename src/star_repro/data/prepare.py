"""`prepare`: raw NTU RGB+D 60/120 and PKU-MMD Phase I -> processed arrays and tables (docs/formats.md).

Streaming by design: NTU samples are read straight out of the official zip archives (no extraction), parsed
in batches (`ntu.parse_skeletons`), denoised and aligned (optionally in worker processes, results kept in name
order) and written row by row into `joints.npy` (created by `open_memmap`), so the resident memory does not
grow with the dataset (NTU-120 is ~20 GB as one float32 array). The whole output folder is built beside the
target and swapped in at the end (`star_repro.io.atomic_dir`).

Bad inputs: `on_error="fail"` stops at the first malformed file with its file, line and reason;
`on_error="skip"` finishes, lists every skipped input in `rejected.tsv` and counts them in `metrics.json`.
Samples with no body in any frame are *missing*, not malformed: they are left out and reported, with a
cross-check against the official missing-skeleton list.
"""
from __future__ import annotations

import csv
import ctypes
import json
import logging
import os
import struct
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from star_repro.data import ntu as ntu_mod
from star_repro.data import pku as pku_mod
from star_repro.data.classes import classes_of
from star_repro.data.ntu import NTU_ARCHIVES, NTU_FOLDER, NTU_MISSING_LISTS, NTU_SCOPE
from star_repro.data.splits import ntu_protocol_indices, parse_pku_split_file, pku_protocol_indices
from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import atomic_dir, atomic_path, canonical_json, read_text

PKU_SPLIT_FILES = ("cross-subject.txt", "cross-view.txt")
SAMPLE_COLUMNS = ("index", "name", "label", "setup", "camera", "subject", "replication", "video", "frames")
REJECTED_COLUMNS = ("name", "file", "line", "reason")
PARSE_BATCH = 32  # NTU files parsed together in one set of vectorised passes
# Everything reading one zip member can raise on a damaged archive: bad CRC (BadZipFile), a corrupt deflate
# stream (zlib.error), a truncated member (EOFError), an unsupported compression method (NotImplementedError),
# encryption (RuntimeError), I/O (OSError).
ZIP_READ_ERRORS = (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError)
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ discovery

@dataclass(frozen=True)
class NtuEntry:
    name: str  # SsssCcccPpppRrrrAaaa
    container: str  # zip archive path, or "" for a loose file
    member: str  # member name inside the archive, or the file path
    # zip members: (local header offset, compression method, compressed size, size, CRC-32, flag bits) from the
    # central directory, so that workers read members directly instead of each parsing the whole directory
    # (which holds one object per member: memory growing with the archive)
    zip_info: tuple[int, int, int, int, int, int] | None = None

    @property
    def where(self) -> str:
        return f"{self.container}:{self.member}" if self.container else self.member


# Timing and parallelism describe a run, not the data: they go to the stage's metrics, not into the processed
# folder, so that a rerun with identical data leaves the folder byte-identical and nothing downstream reruns.
_RUN_KEYS = ("seconds", "files_per_s", "videos_per_s", "workers", "peak_rss_mib", "peak_worker_rss_mib")


def _content_only(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in _RUN_KEYS}


def discover_ntu_inputs(raw_dir: str | Path, dataset: str) -> dict:
    """What `prepare_ntu` would read in `raw_dir`: official archives, an extracted folder, the missing list."""
    raw_dir = Path(raw_dir)
    archives = [raw_dir / a for a in NTU_ARCHIVES[dataset]]
    folder = raw_dir / NTU_FOLDER
    return {
        "archives": {a.name: a.is_file() for a in archives},
        "folder": folder if folder.is_dir() else None,
        "sources": [a for a in archives if a.is_file()] + ([folder] if folder.is_dir() else []),
        "missing_list": (raw_dir / NTU_MISSING_LISTS[dataset])
        if (raw_dir / NTU_MISSING_LISTS[dataset]).is_file() else None,
    }


def list_ntu_entries(sources: Iterable[str | Path], on_error: str = "fail"
                     ) -> tuple[list[NtuEntry], list[tuple[str, str, str]]]:
    """Every `.skeleton` in the zips/folders, by sample name; and (name, file, reason) for unusable names.

    Zip archives are listed from their central directory only; an archive that cannot be opened is an error
    naming it. A sample found twice is an error naming both copies; under `on_error="skip"` the first copy
    (in source order) is kept and every later one is listed with the reason.
    """
    found: dict[str, NtuEntry] = {}
    bad_names: list[tuple[str, str, str]] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            items = [("", str(p), None) for p in sorted(src.rglob("*.skeleton"))]
        elif src.is_file() and zipfile.is_zipfile(src):
            try:
                container = str(src)
                with zipfile.ZipFile(src) as zf:
                    items = [(container, z.filename, (z.header_offset, z.compress_type, z.compress_size,
                                                      z.file_size, z.CRC, z.flag_bits))
                             for z in zf.infolist() if z.filename.endswith(".skeleton")]
            except ZIP_READ_ERRORS as exc:
                raise StarReproError(f"{src}: cannot read the zip archive's directory ({exc}); the archive is "
                                     "damaged: download it again") from None
        elif src.exists():
            raise StarReproError(f"{src}: not a zip archive nor a folder of .skeleton files")
        else:
            raise StarReproError(f"{src}: not found")
        for container, member, zip_info in items:
            base = member.replace("\\", "/").rsplit("/", 1)[-1][:-len(".skeleton")]
            entry = NtuEntry(base, container, member, zip_info)
            if not ntu_mod.SAMPLE_NAME_RE.match(base):
                bad_names.append((base, entry.where, "file name is not an NTU sample name SsssCcccPpppRrrrAaaa"))
                continue
            if base in found:
                reason = f"sample {base} appears twice: {found[base].where} and {entry.where}; keep one copy"
                if on_error == "fail":
                    raise StarReproError(reason)
                bad_names.append((base, entry.where, reason))
                continue
            found[base] = entry
    return [found[k] for k in sorted(found)], bad_names


def read_missing_list(path: str | Path) -> list[str]:
    """The official missing-skeleton list: a free-text header, a blank line, then one sample name per line."""
    names: list[str] = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if ntu_mod.SAMPLE_NAME_RE.match(text):
            names.append(text)
        elif names:
            raise InputFormatError(str(path), line_no, f"expected a sample name SsssCcccPpppRrrrAaaa after "
                                                       f"the header, found {text[:40]!r}")
    return names


# ------------------------------------------------------------------------------------------------ NTU workers

_ZIPS: dict[str, zipfile.ZipFile] = {}
_ZIP_FDS: dict[str, int] = {}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, 22 bytes, name length, extra length


def _read_entry(entry: NtuEntry) -> bytes:
    if not entry.container:
        with open(entry.member, "rb") as fh:
            return fh.read()
    if entry.zip_info is not None:
        return _read_zip_member(entry)
    zf = _ZIPS.get(entry.container)
    if zf is None:
        zf = _ZIPS[entry.container] = zipfile.ZipFile(entry.container)
    return zf.read(entry.member)


def _read_zip_member(entry: NtuEntry) -> bytes:
    """One member, read at its offset and checked as `ZipFile.read` checks it (size, CRC-32); the errors are
    those of `zipfile`/`zlib` (`ZIP_READ_ERRORS`)."""
    offset, method, csize, size, crc, flags = entry.zip_info
    if flags & 0x1:
        raise RuntimeError(f"{entry.member} is encrypted")
    fd = _ZIP_FDS.get(entry.container)
    if fd is None:
        fd = _ZIP_FDS[entry.container] = os.open(entry.container, os.O_RDONLY)
    head = os.pread(fd, _LOCAL_HEADER.size, offset)
    if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local file header of {entry.member}")
    _, name_len, extra_len = _LOCAL_HEADER.unpack(head)
    data = os.pread(fd, csize, offset + _LOCAL_HEADER.size + name_len + extra_len)
    if len(data) != csize:
        raise EOFError(f"{entry.member}: the archive ends inside the member")
    if method == zipfile.ZIP_DEFLATED:
        data = zlib.decompress(data, -15)
    elif method != zipfile.ZIP_STORED:
        raise NotImplementedError(f"{entry.member}: compression method {method} is not supported")
    if len(data) != size or zlib.crc32(data) != crc:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {entry.member!r}")
    return data


_OUT_FDS: dict[str, int] = {}


def _write_slot(target: tuple[str, int, int], slot: int, row: np.ndarray) -> None:
    """Write one processed row straight into its slot of `joints.npy` (target: path, data offset, row bytes)."""
    path, offset, row_bytes = target
    fd = _OUT_FDS.get(path)
    if fd is None:
        fd = _OUT_FDS[path] = os.open(path, os.O_WRONLY)
    data = np.ascontiguousarray(row, dtype="<f4")
    if os.pwrite(fd, data.data, offset + slot * row_bytes) != row_bytes:
        raise StarReproError(f"{path}: short write of sample row {slot}")


def _close_slot_file(path: str) -> None:
    """Close this process's descriptors of the slot file and of the archives (in-process runs; pool workers
    exit with theirs), so a later run never reads or writes through a stale descriptor."""
    fd = _OUT_FDS.pop(path, None)
    if fd is not None:
        os.close(fd)
    while _ZIP_FDS:
        os.close(_ZIP_FDS.popitem()[1])
    while _ZIPS:
        _ZIPS.popitem()[1].close()


def release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc `malloc_trim`): after the archive listing, whose
    per-member objects would otherwise stay resident, and be inherited by every forked worker."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_kib() -> int:
    """This process's resident-memory high-water mark (VmHWM), KiB; 0 where /proc is absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return int(fh.read().split("VmHWM:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def _process_ntu_batch(task: tuple[list[NtuEntry], str, tuple[str, int, int], int]) -> tuple[list[tuple], int]:
    """Worker: a batch of samples -> per sample ("ok", frames, info) | ("missing", msg) | ("error", file, line,
    reason); each processed sample is written by the worker itself into slot `first_slot + i` of `joints.npy`
    (so no array travels back to the main process). Parsing is batched (`ntu.parse_skeletons`); results keep
    the input order. Also returns the worker's peak resident memory so far (KiB)."""
    entries, dataset, target, first_slot = task
    items, read_errors = [], {}
    for i, entry in enumerate(entries):
        try:
            items.append((_read_entry(entry), entry.where))
        except ZIP_READ_ERRORS as exc:
            read_errors[i] = ("error", entry.where, None, f"cannot read ({type(exc).__name__}: {exc})")
            items.append((b"", entry.where))
    out = []
    for i, (entry, raw) in enumerate(zip(entries, ntu_mod.parse_skeletons(items))):
        if i in read_errors:
            out.append(read_errors[i])
            continue
        try:
            if isinstance(raw, Exception):
                raise raw
            with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: caught by the check below
                den = ntu_mod.denoise(raw)
                aligned = ntu_mod.align(den.joints, dataset)
            check_finite_sample(aligned, entry.where)
        except ntu_mod.MissingSkeletonError as exc:
            out.append(("missing", str(exc)))
            continue
        except InputFormatError as exc:
            out.append(("error", exc.file, exc.line, exc.reason))
            continue
        except StarReproError as exc:
            out.append(("error", entry.where, None, str(exc)))
            continue
        _write_slot(target, first_slot + i, aligned.reshape(ntu_mod.MAX_FRAMES, 2, 25, 3).transpose(3, 0, 2, 1))
        info = {"bodies": len(raw.bodies), "actors": den.actors, "removed": list(den.removed.values()),
                "dropped_frames": len(raw.dropped_frames), "removed_frames": len(den.removed_frames)}
        out.append(("ok", int(den.joints.shape[0]), info))
    return out, peak_rss_kib()


def check_finite_sample(arr: np.ndarray, source: str) -> None:
    """Refuse a processed sample with a non-finite value (one vectorised check): coordinates that each fit
    float32 can still overflow when centred (x - origin). Nothing non-finite is ever written."""
    finite = np.isfinite(arr)
    if not finite.all():
        worst = float(np.abs(arr[finite]).max()) if finite.any() else float("nan")
        raise InputFormatError(source, None, f"processing gives values that overflow float32 (largest finite "
                                             f"|value| {worst:.6g}): the coordinates are implausibly large")


def _worker_init() -> None:
    tune_malloc()


def tune_malloc() -> None:
    """Keep freed per-file arrays in the heap (glibc): otherwise every file's temporaries are returned to the OS
    and page-faulted back, which costs more than the parsing on small VMs. Best effort; a no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _imap(func, tasks: list, workers: int) -> Iterator:
    if workers <= 1 or len(tasks) < 2:
        for t in tasks:
            yield func(t)
        return
    import multiprocessing as mp

    # forkserver: workers fork from a fresh server process, not from this one, so they do not inherit (and
    # count as resident) the listing of every input, which grows with the dataset
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["star_repro.data.prepare"])
    else:
        ctx = mp.get_context()
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(func, tasks, chunksize=1)


def _progress(iterable, total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="file", disable=None if enabled else True,
                file=sys.stderr, dynamic_ncols=True)


# ------------------------------------------------------------------------------------------------ writing

class _RowWriter:
    """`joints.npy` streamed row by row: `open_memmap` creates the file (header, full size), rows are then
    written in order through one file handle. Nothing accumulates in memory, whatever N is; `close` shrinks
    the array to the rows actually written (rejected or missing samples).

    Slot mode (NTU): workers write row k of the input list into slot k themselves (`target`, `_write_slot`);
    the caller then `keep`s the slots of the samples that made it, in order, and `close` moves the kept rows
    together (only when a sample was left out) before shrinking the array.
    """

    def __init__(self, path: Path, capacity: int, row_shape: tuple[int, ...]):
        self.path = path
        self.row_shape = row_shape
        self.capacity = max(capacity, 1)
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(self.capacity,) + row_shape)
        self.offset = mm.offset
        del mm
        self.fh = open(path, "r+b")
        self.fh.seek(self.offset)
        self.n = 0
        self.row_bytes = int(np.prod(row_shape)) * 4
        self._kept: list[int] = []

    @property
    def target(self) -> tuple[str, int, int]:
        return str(self.path), self.offset, self.row_bytes

    def keep(self, slot: int) -> None:
        self._kept.append(slot)
        self.n += 1

    def _compact(self) -> None:
        """Move kept slot rows down over the left-out ones (ascending, so no row is overwritten before it moves)."""
        fd = self.fh.fileno()
        for dst, src in enumerate(self._kept):
            if src != dst:
                row = os.pread(fd, self.row_bytes, self.offset + src * self.row_bytes)
                os.pwrite(fd, row, self.offset + dst * self.row_bytes)

    def append(self, row: np.ndarray) -> None:
        if self.n >= self.capacity:
            raise StarReproError("internal: more rows than reserved in joints.npy")
        self.fh.write(np.ascontiguousarray(row, dtype="<f4").data)
        self.n += 1

    def close(self) -> None:
        """Flush, then shrink the array to the rows written (header rewritten in place, same length)."""
        self.fh.flush()
        if self._kept and self._kept[-1] != len(self._kept) - 1:
            self._compact()
        if self.n < self.capacity:
            row_bytes = int(np.prod(self.row_shape)) * 4
            header = {"descr": "<f4", "fortran_order": False, "shape": (self.n,) + self.row_shape}
            text = repr(header).encode("latin1")
            self.fh.seek(0)
            magic = self.fh.read(8)
            hlen_size = 2 if magic[6] == 1 else 4
            hlen = int.from_bytes(self.fh.read(hlen_size), "little")
            self.fh.seek(8 + hlen_size)
            self.fh.write(text + b" " * (hlen - len(text) - 1) + b"\n")
            self.fh.truncate(self.offset + self.n * row_bytes)
        os.fsync(self.fh.fileno())
        self.fh.close()


def _write_sample_tables(folder: Path, rows: list, rejected: list, protocol_indices: dict) -> dict:
    """samples.tsv, rejected.tsv and protocols.json ({protocol: {"train": [...], "test": [...]}}) of a dataset;
    returns the protocol sizes for the metrics."""
    _write_table(folder / "samples.tsv", SAMPLE_COLUMNS, rows)
    _write_table(folder / "rejected.tsv", REJECTED_COLUMNS, rejected)
    proto = {name: {"train": idx["train"].tolist(), "test": idx["test"].tolist()}
             for name, idx in protocol_indices.items()}
    (folder / "protocols.json").write_text(json.dumps(proto, separators=(",", ":")) + "\n", encoding="utf-8")
    return {name: {k: len(v) for k, v in d.items()} for name, d in proto.items()}


def _write_table(path: Path, header: tuple[str, ...], rows: Iterable[Iterable]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])


# ------------------------------------------------------------------------------------------------ NTU

def prepare_ntu(dataset: str, sources: list[Path], out_dir: Path, protocols: dict, missing_list: Path | None = None,
                on_error: str = "fail", workers: int = 1, progress: bool = True) -> dict:
    """Process the NTU samples of `dataset` found in `sources` into `out_dir` (docs/formats.md); returns metrics.

    Selection: actions A001-A060 and setups S001-S017 for ntu60, A001-A120 and S001-S032 for ntu120, in
    sorted name order (the order of the published `skes_available_name.txt`), minus the missing list.
    `protocols`: params `protocols.<dataset>` ({name: {"by", "train", "test"}}).
    """
    if dataset not in NTU_SCOPE:
        raise StarReproError(f"prepare_ntu: dataset must be ntu60 or ntu120, got {dataset!r}")
    if on_error not in ("fail", "skip"):
        raise StarReproError(f"prepare.on_error must be 'fail' or 'skip', got {on_error!r}")
    if not sources:
        raise StarReproError(f"prepare {dataset}: no archive or folder of .skeleton files given; "
                             "`star-repro doctor` shows where the raw files go")
    tune_malloc()
    t0 = time.perf_counter()
    entries, bad_names = list_ntu_entries(sources, on_error)
    release_freed_memory()
    if bad_names and on_error == "fail":
        name, where, reason = bad_names[0]
        raise InputFormatError(where, None, reason)
    last_setup, last_action = NTU_SCOPE[dataset]
    selected = []
    for e in entries:
        meta = ntu_mod.parse_sample_name(e.name)
        if meta["setup"] <= last_setup and meta["action"] <= last_action:
            selected.append(e)
    listed = set(read_missing_list(missing_list)) if missing_list else set()
    listed_present = sorted(e.name for e in selected if e.name in listed)
    todo = [e for e in selected if e.name not in listed]
    if not todo:
        raise StarReproError(f"prepare {dataset}: no {dataset} samples found in {[str(s) for s in sources]}")

    rows, rejected, unlisted_missing = [], [list(b[:2]) + [None, b[2]] for b in bad_names], []
    stats = {"two_actor": 0, "bodies_removed": {"length": 0, "spread": 0, "overlap": 0},
             "samples_with_dropped_frames": 0, "samples_with_removed_frames": 0}
    with atomic_dir(out_dir) as tmp:
        writer = _RowWriter(tmp / "joints.npy", len(todo), (3, ntu_mod.MAX_FRAMES, 25, 2))
        batches = [(todo[i:i + PARSE_BATCH], dataset, writer.target, i) for i in range(0, len(todo), PARSE_BATCH)]
        results = _imap(_process_ntu_batch, batches, workers)
        worker_peak = [0]

        def flatten():
            for out, peak in results:
                worker_peak[0] = max(worker_peak[0], peak)
                yield from out

        flat = flatten()
        try:
            for slot, (entry, res) in enumerate(_progress(zip(todo, flat), len(todo), f"prepare {dataset}",
                                                          progress)):
                kind = res[0]
                if kind == "missing":
                    unlisted_missing.append(entry.name)
                    continue
                if kind == "error":
                    _, file, line, reason = res
                    if on_error == "fail":
                        raise InputFormatError(file, line, reason)
                    rejected.append([entry.name, file, line, reason])
                    continue
                _, frames, info = res
                writer.keep(slot)
                meta = ntu_mod.parse_sample_name(entry.name)
                rows.append([len(rows), entry.name, meta["action"] - 1, meta["setup"], meta["camera"],
                             meta["subject"], meta["replication"], "", frames])
                stats["two_actor"] += info["actors"] == 2
                stats["samples_with_dropped_frames"] += info["dropped_frames"] > 0
                stats["samples_with_removed_frames"] += info["removed_frames"] > 0
                for reason in info["removed"]:
                    stats["bodies_removed"][reason] += 1
        finally:
            results.close()  # stops the worker pool at once on an error
            _close_slot_file(writer.target[0])
        writer.close()
        if not rows:
            raise StarReproError(f"prepare {dataset}: every sample was rejected or missing; see the errors above")
        meta_arr = {k: np.array([r[i] for r in rows], np.int64)
                    for i, k in ((3, "setup"), (4, "camera"), (5, "subject"), (6, "replication"))}
        protocol_indices = {name: ntu_protocol_indices(meta_arr, cfg) for name, cfg in protocols.items()}
        proto_sizes = _write_sample_tables(tmp, rows, rejected, protocol_indices)
        seconds = time.perf_counter() - t0
        metrics = {
            "dataset": dataset, "samples": len(rows), "rejected": len(rejected),
            "missing": len(listed_present) + len(unlisted_missing),
            "missing_listed": len(listed_present), "missing_unlisted": unlisted_missing,
            "listed_but_absent": len(listed - {e.name for e in selected}) if missing_list else None,
            "files": len(todo), "seconds": round(seconds, 3), "files_per_s": round(len(todo) / seconds, 1),
            "workers": workers, "frames_max": max(r[-1] for r in rows),
            "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
            "peak_worker_rss_mib": round(worker_peak[0] / 1024, 1) if workers > 1 else None,
            "protocols": proto_sizes,
            **stats,
        }
        (tmp / "metrics.json").write_text(canonical_json(_content_only(metrics)), encoding="utf-8")
    if unlisted_missing:
        log.warning("prepare %s: %d sample(s) with no body in any frame are not on the missing-skeleton list "
                    "(left out as missing): %s", dataset, len(unlisted_missing), ", ".join(unlisted_missing[:10]))
    if rejected:
        log.warning("prepare %s: %d input(s) rejected, listed in %s", dataset, len(rejected), out_dir / "rejected.tsv")
    return metrics


# ------------------------------------------------------------------------------------------------ PKU

def discover_pku_inputs(raw_dir: str | Path, protocols: dict | None = None) -> dict:
    raw_dir = Path(raw_dir)
    split_files = [cfg["split_file"] for cfg in (protocols or {}).values()] or list(PKU_SPLIT_FILES)
    skel = sorted((raw_dir / "skeletons").glob("*.txt")) if (raw_dir / "skeletons").is_dir() else []
    labels = sorted((raw_dir / "labels").glob("*.txt")) if (raw_dir / "labels").is_dir() else []
    return {"skeletons": skel, "labels": labels,
            "split_files": {f: (raw_dir / f).is_file() for f in split_files}}


def _video_key(path: Path) -> tuple[int, int] | None:
    try:
        return pku_mod.parse_video_name(path.stem)
    except ValueError:
        return None


def _process_pku_video(task: tuple[str, str, str, tuple[str, ...], str]) -> tuple[list, list]:
    """Worker: one long video -> ([(clip fields, position64)], [rejected rows]).

    A problem of the whole video (unreadable or empty label file, missing or malformed skeleton file) rejects
    the video; a bad label row, a row past the end of the sequence, or a clip that cannot be processed
    rejects that clip only. Rejected rows come in label-row order, so `fail` raises the first one.
    """
    video, skel_path, label_path, ignore, arccos = task
    try:
        with open(label_path, "rb") as fh:
            labels, row_errors = pku_mod.parse_label_rows(fh.read(), label_path)
        if not labels and not row_errors:
            raise InputFormatError(label_path, 1, "empty label file: expected one row action,start,end,confidence "
                                                  f"per labelled action (video {video} would give no clip)")
    except InputFormatError as exc:
        return [], [[video, exc.file, exc.line, exc.reason]]
    if not os.path.isfile(skel_path):
        return [], [[video, skel_path, None, f"skeleton file missing for label file {label_path}"]]
    try:
        with open(skel_path, "rb") as fh:
            skeleton = pku_mod.read_skeleton_file(fh.read(), skel_path)
    except InputFormatError as exc:
        return [], [[video, exc.file, exc.line, exc.reason]]
    done, rejected = [], []
    for bad in row_errors:
        exc = bad.error
        rejected.append((bad.row, [pku_mod.clip_name(video, bad.action, bad.row), exc.file, exc.line, exc.reason]))
    for row in labels:
        name = pku_mod.clip_name(video, row.action, row.row)
        if name in ignore:
            continue
        try:
            pku_mod.check_label_range(row, len(skeleton), label_path)
            clip = pku_mod.cut_clip(skeleton, video, row)
            length = pku_mod.clip_length(clip.data)
            if length == 0:
                raise InputFormatError(label_path, row.line, f"clip {name}: person 1 is absent in every frame")
            with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: caught by the check below
                pos = pku_mod.process_clip(clip.data, arccos)
            try:
                check_finite_sample(pos, skel_path)
            except InputFormatError as exc:
                raise InputFormatError(skel_path, None, f"clip {name} (label row on {label_path}:{row.line}): "
                                                        f"{exc.reason}") from None
        except InputFormatError as exc:
            rejected.append((row.row, [name, exc.file, exc.line, exc.reason]))
            continue
        done.append(((name, clip.label, video, length), pos))
    done.sort(key=lambda d: d[0][0])
    rejected.sort(key=lambda r: r[0])
    return done, [r for _, r in rejected]


def _pku_inventory(raw_dir: Path, splits: dict, split_paths: dict) -> tuple[list[Path], list[list]]:
    """The label files to process, and a rejected row for every input that would otherwise be passed over:
    a label file not named like a video (0005-L.txt), a skeleton file without a label file, and a video
    listed in neither the training nor the testing list of a split file (the published rule would put it
    in the test set without a word)."""
    labels_dir, skel_dir = raw_dir / "labels", raw_dir / "skeletons"
    problems = []
    label_files = []
    for p in sorted(labels_dir.glob("*.txt")):
        if _video_key(p) is None:
            problems.append([p.stem, str(p), None, "label file name is not a PKU-MMD Phase I video name: expected "
                                                   "like 0005-L.txt (4-digit video id, view L, M or R)"])
        else:
            label_files.append(p)
    label_names = {p.name for p in label_files}
    for p in sorted(skel_dir.glob("*.txt")) if skel_dir.is_dir() else []:
        if p.name not in label_names:
            problems.append([p.stem, str(p), None, f"skeleton file without a label file (expected "
                                                   f"{labels_dir / p.name}): its actions are unknown"])
    kept = []
    for p in label_files:
        missing = [(pname, split) for pname, split in splits.items()
                   if p.stem not in split["train"] and p.stem not in split["test"]]
        if missing:
            pname, split = missing[0]
            problems.append([p.stem, str(split_paths[pname]), None, f"video {p.stem} is in neither the training list "
                                                          f"(line 2) nor the testing list (line 4) of protocol "
                                                          f"{pname}'s split file"])
        else:
            kept.append(p)
    kept.sort(key=_video_key)
    return kept, problems


def prepare_pku(raw_dir: Path, out_dir: Path, protocols: dict, on_error: str = "fail", workers: int = 1,
                progress: bool = True, ignore: Iterable[str] = pku_mod.PKU1_IGNORED_CLIPS,
                arccos: str = "native") -> dict:
    """PKU-MMD Phase I: every labelled action of every video with a label file -> (N, 3, 64, 25, 2) float32.

    Clips are sorted by name (video id, view, class, row). `protocols`: params `protocols.pku1`
    ({name: {"split_file": ...}}), file names relative to `raw_dir`. `ignore`: clip names the published
    gendata skips (its missing-skeleton list). `arccos`: see `star_repro.data.pku.process_clip`.
    """
    if on_error not in ("fail", "skip"):
        raise StarReproError(f"prepare.on_error must be 'fail' or 'skip', got {on_error!r}")
    raw_dir = Path(raw_dir)
    tune_malloc()
    t0 = time.perf_counter()
    splits, split_paths = {}, {}
    for pname, cfg in protocols.items():
        path = raw_dir / cfg["split_file"]
        if not path.is_file():
            raise StarReproError(f"{path}: split file for protocol {pname} not found (run `star-repro doctor`)")
        splits[pname] = parse_pku_split_file(path)
        split_paths[pname] = path
    label_files, inventory_problems = _pku_inventory(raw_dir, splits, split_paths)
    if inventory_problems and on_error == "fail":
        _, file, line, reason = inventory_problems[0]
        raise InputFormatError(file, line, reason)
    if not label_files:
        raise StarReproError(f"{raw_dir / 'labels'}: no usable PKU-MMD label files (0XXX-L.txt ...) found")
    ignore = tuple(ignore)
    tasks = [(p.stem, str(raw_dir / "skeletons" / p.name), str(p), ignore, arccos) for p in label_files]
    n_clips_max = 0
    for _, _, lp, _, _ in tasks:
        with open(lp, "rb") as fh:
            n_clips_max += sum(1 for line in fh if line.strip())
    rows, rejected = [], list(inventory_problems)
    with atomic_dir(out_dir) as tmp:
        writer = _RowWriter(tmp / "joints.npy", n_clips_max, (3, pku_mod.T_OUT, 25, 2))
        results = _imap(_process_pku_video, tasks, workers)
        try:
            for done, bad in _progress(results, len(tasks), "prepare pku1", progress):
                if bad and on_error == "fail":
                    _, file, line, reason = bad[0]
                    raise InputFormatError(file, line, reason)
                rejected.extend(bad)
                for (name, label, video, length), pos in done:
                    writer.append(pos)
                    rows.append([len(rows), name, label, "", pku_mod.parse_video_name(video)[1], "", "", video,
                                 length])
        finally:
            results.close()
        writer.close()
        if not rows:
            raise StarReproError("prepare pku1: every clip was rejected; see rejected.tsv")
        videos = [r[7] for r in rows]
        protocol_indices = {name: pku_protocol_indices(videos, split) for name, split in splits.items()}
        proto_sizes = _write_sample_tables(tmp, rows, rejected, protocol_indices)
        seconds = time.perf_counter() - t0
        metrics = {"dataset": "pku1", "samples": len(rows), "rejected": len(rejected), "videos": len(tasks),
                   "ignored": sorted(ignore), "seconds": round(seconds, 3), "arccos": arccos,
                   "videos_per_s": round(len(tasks) / seconds, 2), "workers": workers,
                   "protocols": proto_sizes}
        (tmp / "metrics.json").write_text(canonical_json(_content_only(metrics)), encoding="utf-8")
    if rejected:
        log.warning("prepare pku1: %d input(s) rejected, listed in %s", len(rejected), out_dir / "rejected.tsv")
    return metrics


# ------------------------------------------------------------------------------------------------ export

def export_npz(processed_dir: str | Path, protocol: str, out_path: str | Path, chunk: int = 64) -> dict:
    """Write the CTR-GCN / AimCLR `.npz` layout of one protocol, streaming (memory flat in N).

    Rows are read with `pread` into one reused buffer and re-laid out into a second (no memory map, whose
    pages would count as resident memory growing with N; no per-chunk temporaries).

    NTU: `x_train`/`x_test` float32 (N, 300, 150), `y_train`/`y_test` one-hot float64 (N, C).
    PKU: `x_*` float32 (N, 3, 64, 25, 2), `y_*` int64 (N, 1).
    """
    from star_repro.data.dataset import ProcessedDataset

    processed_dir = Path(processed_dir)
    ds = ProcessedDataset(processed_dir)
    try:
        dataset = json.loads((processed_dir / "metrics.json").read_text(encoding="utf-8"))["dataset"]
    except (OSError, ValueError, KeyError):
        raise StarReproError(f"{processed_dir / 'metrics.json'}: missing or without 'dataset'; re-run prepare") from None
    n_classes = len(classes_of(dataset))
    split = ds.protocol(protocol)
    is_ntu = dataset.startswith("ntu")
    t = ds.joints.shape[2]

    row_shape = tuple(ds.joints.shape[1:])
    row_bytes = int(np.prod(row_shape)) * 4
    rows_buf = np.empty((chunk,) + row_shape, "<f4")
    out_buf = np.empty((chunk, t, 2, 25, 3), "<f4") if is_ntu else rows_buf
    joints_path, data_offset = ds.joints.filename, ds.joints.offset

    def x_chunks(idx):
        """Byte views of consecutive row blocks of `idx`, in the export layout."""
        fd = os.open(joints_path, os.O_RDONLY)
        try:
            raw = rows_buf.reshape(chunk, -1).view(np.uint8)
            for s in range(0, len(idx), chunk):
                part = idx[s:s + chunk]
                for k, i in enumerate(part.tolist()):
                    if os.preadv(fd, [raw[k]], data_offset + i * row_bytes) != row_bytes:
                        raise StarReproError(f"{joints_path}: truncated at sample {i}; re-run prepare")
                if is_ntu:
                    np.copyto(out_buf[:len(part)], rows_buf[:len(part)].transpose(0, 2, 4, 3, 1))
                yield out_buf[:len(part)].reshape(-1).view(np.uint8)
        finally:
            os.close(fd)

    def y_full(idx):
        labels = ds.labels[idx]
        if is_ntu:
            y = np.zeros((len(idx), n_classes), np.float64)
            y[np.arange(len(idx)), labels] = 1.0
            return y
        return labels.astype(np.int64).reshape(-1, 1)

    out_path = Path(out_path)
    shapes = {}
    with atomic_path(out_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for part in ("train", "test"):
            idx = np.asarray(split[part], np.int64)
            x_shape = (len(idx), t, 150) if is_ntu else (len(idx),) + tuple(ds.joints.shape[1:])
            with zf.open(f"x_{part}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False,
                                                          "shape": x_shape})
                for block in x_chunks(idx):
                    fh.write(block)
            y = y_full(idx)
            with zf.open(f"y_{part}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, y, allow_pickle=False)
            shapes[f"x_{part}"] = list(x_shape)
            shapes[f"y_{part}"] = list(y.shape)
    return {"path": str(out_path), "dataset": dataset, "protocol": protocol, "shapes": shapes}
