"""`star-repro doctor`: which raw inputs are present, what is missing, and exactly where each file goes.

A report, not a check: it exits 0 even when inputs are missing (1 with `--strict`). It reads only file listings
(zip central directories), never the skeleton data, so it is quick even on the full archives.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# Where each raw input comes from (shown next to the path it must have).
NTU_URL = "https://rose1.ntu.edu.sg/dataset/actionRecognition/ (request access)"
NTU_LIST_URL = "https://github.com/shahroudy/NTURGB-D (Matlab/NTU_RGBD*_samples_with_missing_skeletons.txt)"
PKU_URL = "https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html (Phase 1: Skeleton, Label, Split)"
EXPECTED = {"nturgbd_skeletons_s001_to_s017.zip": 56880, "nturgbd_skeletons_s018_to_s032.zip": 57600,
            "NTU_RGBD_samples_with_missing_skeletons.txt": 302,
            "NTU_RGBD120_samples_with_missing_skeletons.txt": 535, "pku_videos": 1076}
FAMILY = {"ntu60": "ntu", "ntu120": "ntu", "pku1": "pku1"}


def register(sub) -> None:
    p = sub.add_parser(
        "doctor", help="report which raw dataset files are present and where missing ones go",
        description="For NTU RGB+D 60, NTU RGB+D 120 and PKU-MMD Phase I: which raw inputs are present under "
        "RAW_ROOT (archives or extracted folders, missing-skeleton lists, PKU skeletons, labels and split "
        "files), how many samples they hold, what is missing and the exact path to put it at. Also reports the "
        "embedded synthetic stand-ins under data/synthetic. Exit code 0 (a report); 1 with --strict when "
        "anything is missing.")
    p.add_argument("--raw-root", default="data/raw", help="folder holding ntu/ and pku1/ (default data/raw)")
    p.add_argument("--synthetic-root", default="data/synthetic", help="where `star-repro synth` writes")
    p.add_argument("--datasets", nargs="+", default=["ntu60", "ntu120", "pku1"], choices=sorted(FAMILY))
    p.add_argument("--strict", action="store_true", help="exit 1 when any input is missing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run)


def _zip_count(path: Path) -> int | str:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return sum(1 for n in zf.namelist() if n.endswith(".skeleton"))
    except (OSError, zipfile.BadZipFile) as exc:
        return f"unreadable ({exc})"


def _list_count(path: Path) -> int | str:
    from star_repro.data.prepare import read_missing_list
    from star_repro.errors import StarReproError

    try:
        return len(read_missing_list(path))
    except (OSError, StarReproError) as exc:
        return f"unreadable ({exc})"


def check_ntu(raw_root: Path, dataset: str) -> dict:
    from star_repro.data.prepare import NTU_ARCHIVES, NTU_FOLDER, NTU_MISSING_LISTS

    base = raw_root / FAMILY[dataset]
    folder = base / NTU_FOLDER
    loose = sorted(p.name for p in folder.rglob("*.skeleton")) if folder.is_dir() else []
    items, missing = [], []
    for arch in NTU_ARCHIVES[dataset]:
        path = base / arch
        if path.is_file():
            items.append({"what": arch, "path": str(path), "present": True, "skeleton_files": _zip_count(path),
                          "expected": EXPECTED[arch]})
        else:
            first = "S001" if "s001" in arch else "S018"
            covered = [n for n in loose if (n[:4] <= "S017") == (first == "S001")]
            if covered:
                items.append({"what": arch, "path": str(folder), "present": True, "skeleton_files": len(covered),
                              "expected": EXPECTED[arch], "note": "extracted folder used instead of the archive"})
            else:
                items.append({"what": arch, "path": str(path), "present": False, "expected": EXPECTED[arch]})
                missing.append(f"{arch}: put the official archive at {path} (from {NTU_URL}), or extract it so "
                               f"that {folder / (first + 'C001P001R001A001.skeleton')} exists")
    lst = base / NTU_MISSING_LISTS[dataset]
    if lst.is_file():
        items.append({"what": lst.name, "path": str(lst), "present": True, "names": _list_count(lst),
                      "expected": EXPECTED[lst.name]})
    else:
        items.append({"what": lst.name, "path": str(lst), "present": False, "expected": EXPECTED[lst.name]})
        missing.append(f"{lst.name}: put the official missing-skeleton list at {lst} (from {NTU_LIST_URL})")
    return {"dataset": dataset, "folder": str(base), "items": items, "missing": missing}


def check_pku(raw_root: Path) -> dict:
    base = raw_root / FAMILY["pku1"]
    skel_dir, label_dir = base / "skeletons", base / "labels"
    skel = {p.stem for p in skel_dir.glob("*.txt")} if skel_dir.is_dir() else set()
    labels = {p.stem for p in label_dir.glob("*.txt")} if label_dir.is_dir() else set()
    items, missing = [], []
    items.append({"what": "skeletons", "path": str(skel_dir), "present": bool(skel), "files": len(skel),
                  "expected": EXPECTED["pku_videos"]})
    items.append({"what": "labels", "path": str(label_dir), "present": bool(labels), "files": len(labels),
                  "expected": EXPECTED["pku_videos"]})
    if not skel:
        missing.append(f"skeletons: put the Phase 1 skeleton files at {skel_dir}/0002-L.txt ... (from {PKU_URL})")
    if not labels:
        missing.append(f"labels: put the Phase 1 label files at {label_dir}/0002-L.txt ... (from {PKU_URL})")
    without = sorted(labels - skel)
    if skel and without:
        items.append({"what": "label files without a skeleton file", "count": len(without),
                      "first": without[:5]})
        missing.append(f"skeletons for {len(without)} labelled videos, e.g. {skel_dir / (without[0] + '.txt')}")
    for f in ("cross-subject.txt", "cross-view.txt"):
        path = base / f
        items.append({"what": f, "path": str(path), "present": path.is_file()})
        if not path.is_file():
            missing.append(f"{f}: put the official Phase 1 split file at {path} (from {PKU_URL})")
    return {"dataset": "pku1", "folder": str(base), "items": items, "missing": missing}


def run(args) -> int:
    raw_root = Path(args.raw_root)
    report = []
    for ds in args.datasets:
        report.append(check_pku(raw_root) if ds == "pku1" else check_ntu(raw_root, ds))
    synth = Path(args.synthetic_root)
    synth_sets = sorted(p.name for p in synth.iterdir() if p.is_dir()) if synth.is_dir() else []
    n_missing = sum(len(r["missing"]) for r in report)
    if args.json:
        json.dump({"raw_root": str(raw_root), "datasets": report, "synthetic": {"path": str(synth),
                   "present": synth_sets}, "missing": n_missing}, sys.stdout, indent=1)
        print()
    else:
        for r in report:
            state = "complete" if not r["missing"] else f"{len(r['missing'])} missing"
            print(f"{r['dataset']}: {r['folder']} ({state})")
            for it in r["items"]:
                if "present" not in it:
                    print(f"  ! {it['what']}: {it['count']} (e.g. {', '.join(it['first'])})")
                    continue
                mark = "ok " if it["present"] else "-- "
                counts = [f"{k.replace('_', ' ')} {it[k]}" for k in ("skeleton_files", "names", "files") if k in it]
                if "expected" in it:
                    counts.append(f"expected {it['expected']}")
                note = f" [{it['note']}]" if "note" in it else ""
                print(f"  {mark}{it['what']}: {it['path']}" + (f" ({', '.join(counts)})" if counts else "") + note)
            for m in r["missing"]:
                print(f"  missing {m}")
        if synth_sets:
            print(f"synthetic stand-ins (embedded default): {synth} has {', '.join(synth_sets)}")
        else:
            print(f"synthetic stand-ins (embedded default): none yet under {synth}; `star-repro synth` (or "
                  "`dvc repro` / `snakemake` with data.source: synthetic) writes them, no download needed")
        if n_missing:
            print(f"{n_missing} raw input(s) missing; the pipeline can still run on the synthetic stand-ins "
                  "(params.yaml data.source: synthetic)")
    return 1 if (args.strict and n_missing) else 0
