"""`star-repro doctor`: which inputs the chosen profile needs, which are present, and the command for each gap.

Raw data: which archives, lists and folders are present and exactly where a missing file goes. For the profile
of params.yaml (or `--profile`): every description set the DAG reads (complete? which entries are missing?), the
CLIP weights (present, sha256 checked) and the authors' released backbones (needed with `pretrain.source:
authors`, optional otherwise). A report, not a check: it exits 0 even when inputs are missing (1 with
`--strict`). It reads only file listings (zip central directories), never the skeleton data.
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
    p.add_argument("--raw-root", default=None, help="folder holding ntu/ and pku1/ (default: params data.raw_root, "
                   "else data/raw)")
    p.add_argument("--synthetic-root", default="data/synthetic", help="where `star-repro synth` writes")
    p.add_argument("--datasets", nargs="+", default=None, choices=sorted(FAMILY),
                   help="raw datasets to check (default: params data.datasets)")
    p.add_argument("--params", default="params.yaml", help="the params file whose profile is checked")
    p.add_argument("--profile", default=None, choices=("demo", "paper", "official-code"),
                   help="check this profile's inputs instead of params.yaml's `profile`")
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


# -- the chosen profile's inputs -----------------------------------------------------------------------------------
def load_profile_params(path: str, profile: str | None) -> dict | None:
    """params.yaml with `profile` overridden (None when there is no params file to read)."""
    from star_repro.config import load_params, validate

    if not Path(path).is_file():
        return None
    params = load_params(path)
    if profile is not None:
        params["profile"] = profile
        validate(params, f"{path} (profile {profile})")
    return params


def check_descriptions(params: dict, cache_root: str | Path = "prompts/cache") -> list[dict]:
    """Every description set a describe stage of the DAG reads: complete, or what is missing and its command."""
    from star_repro.data.classes import classes_of
    from star_repro.errors import StarReproError
    from star_repro.registry import description_cells, description_set
    from star_repro.text.descriptions import DescriptionCache, cache_path, check_cache, fill_command

    rows = []
    for ds, part in description_cells(params):
        name, _keys = description_set(params, part)
        path = cache_path(name, ds, part, cache_root)
        row = {"stage": f"describe_{ds}_{part}part", "dataset": ds, "partition": part, "set": name, "path": str(path),
               "command": fill_command(name, ds, part)}
        expected = len(classes_of(ds)) * part
        if not path.is_file():
            rows.append(row | {"present": False, "missing": expected, "stale": 0, "expected": expected})
            continue
        try:
            problems = check_cache(DescriptionCache.load(path), classes_of(ds),
                                   template=params["descriptions"].get("template"))
        except StarReproError as exc:
            rows.append(row | {"present": False, "missing": expected, "stale": 0, "expected": expected,
                               "error": str(exc)})
            continue
        miss = [p for p in problems if p.kind == "missing"]
        rows.append(row | {"present": not problems, "missing": len(miss), "stale": len(problems) - len(miss),
                           "expected": expected, "first": sorted({f"{p.cls} / {p.part}" for p in problems})[:3]})
    return rows


def check_clip(params: dict) -> dict | None:
    """The profile's CLIP weights: found where the pipeline looks, with OpenAI's published sha256 (None: the
    profile's encoder is not CLIP)."""
    from star_repro.fetch import CLIP_FILE
    from star_repro.text.encoders import WEIGHTS_DIR, clip_weights_candidates, published_sha256, sha256_file_cached

    embed = params["profiles"][params["profile"]]["embed"]
    if not embed["encoder"].startswith("clip:"):
        return None
    model, pretrained = embed["encoder"].split(":", 1)[1], embed.get("pretrained") or "openai"
    weights = embed.get("weights")
    if weights == "random":
        return {"encoder": embed["encoder"], "present": True, "path": "random", "note": "random weights (test)"}
    from open_clip.pretrained import get_pretrained_cfg

    url = (get_pretrained_cfg(model, pretrained) or {}).get("url") or ""
    expected = published_sha256(url)
    searched = [Path(weights)] if weights else clip_weights_candidates(model, pretrained)
    hit = next((p for p in searched if p.is_file()), None)
    command = ("star-repro fetch clip" if Path(url).name == CLIP_FILE else
               f"put the weights at {WEIGHTS_DIR / (Path(url).name or 'FILE')} (or set embed.weights)")
    row = {"encoder": embed["encoder"], "expected_sha256": expected, "command": command,
           "searched": [str(p) for p in searched]}
    if hit is None:
        return row | {"present": False, "path": str(searched[0]) if searched else ""}
    digest = sha256_file_cached(hit, Path("data/embeddings/cache/weights-sha256.json"))
    expected = row["expected_sha256"] = published_sha256(url, hit)  # the rule the encoder applies at load
    ok = expected is None or digest == expected
    return row | {"present": ok, "path": str(hit), "sha256": digest,
                  **({} if ok else {"error": f"sha256 {digest} is not the published {expected}; delete it and "
                                             "fetch again"})}


def check_backbones(params: dict) -> list[dict]:
    """The authors' released backbones of the DAG's cells: required with `pretrain.source: authors`, else
    optional (reported so a user can switch routes)."""
    from star_repro.registry import pretrain_cells
    from star_repro.training.released_backbone import DEFAULT_DIR, pretrain_source, released_name

    from star_repro.config import for_dataset

    section = params["profiles"][params["profile"]]["pretrain"]
    rows = []
    for ds, proto, split in pretrain_cells(params):
        cfg = for_dataset(section, ds)
        required = pretrain_source(cfg) == "authors"
        if not required and float(cfg.get("width", 1.0)) != 1.0:
            continue  # the releases are full-width Shift-GCNs: they cannot serve a narrowed (demo) backbone
        folder = Path(cfg.get("released_dir") or DEFAULT_DIR)
        stage, name = f"pretrain_{ds}_{proto}_{split}", released_name(ds, proto, split)
        if name is None:
            rows.append({"stage": stage, "released": False, "required": False,
                         "note": "no released backbone: pretrained here"})
            continue
        path = folder / name
        rows.append({"stage": stage, "released": True, "required": required, "path": str(path),
                     "present": path.is_file()})
    return rows


def _profile_missing(desc: list[dict], clip: dict | None, backbones: list[dict]) -> list[str]:
    """One line per missing required input of the profile, each with its command."""
    out, seen = [], set()
    for d in desc:
        if not d["present"] and d["path"] not in seen:  # NTU-60 and NTU-120 share the ntu120 file
            seen.add(d["path"])
            what = "missing" if d["missing"] == d["expected"] and not d.get("first") else \
                f"{d['missing']} missing and {d['stale']} stale of {d['expected']} (e.g. {', '.join(d['first'])})"
            out.append(f"descriptions {d['set']} for {d['dataset']} {d['partition']}-part ({d['path']}): {what}; "
                       f"run: {d['command']}")
    if clip is not None and not clip["present"]:
        why = clip.get("error") or f"not found (searched {', '.join(clip['searched'])})"
        out.append(f"CLIP weights for {clip['encoder']}: {why}; run: {clip['command']}")
    for b in backbones:
        if b.get("required") and not b["present"]:
            out.append(f"authors' backbone {b['path']} for {b['stage']}: not there; download it from the links in "
                       "the STAR authors' README (github.com/cseeyangchen/STAR), or set pretrain.source: train")
    return out


def _print_profile(params: dict, desc: list[dict], clip: dict | None, backbones: list[dict],
                   missing: list[str]) -> None:
    prof = params["profile"]
    print(f"profile {prof} (data.source {params['data']['source']}):")
    for d in desc:
        mark = "ok " if d["present"] else "-- "
        state = "complete" if d["present"] else f"{d['missing']} missing, {d['stale']} stale"
        print(f"  {mark}descriptions {d['dataset']} {d['partition']}-part: set {d['set']} ({d['path']}; {state})")
    if clip is not None:
        mark = "ok " if clip["present"] else "-- "
        sha = f"; sha256 {clip['sha256'][:12]}… " + ("verified" if clip.get("expected_sha256") else "unpinned") \
            if clip.get("sha256") else ""
        print(f"  {mark}CLIP weights {clip['encoder']}: {clip['path']}{sha}")
    released = [b for b in backbones if b["released"]]
    if released:
        have = sum(b["present"] for b in released)
        need = "required (pretrain.source: authors)" if any(b["required"] for b in released) else \
            "optional (pretrain.source: train; set authors to use them)"
        print(f"  {'ok ' if have == len(released) else '-- '}authors' backbones: {have} of {len(released)} present "
              f"under {Path(released[0]['path']).parent} ({need})")
        for b in released:
            if not b["required"] and not b["present"]:
                print(f"     optional {b['path']}")
    for m in missing:
        print(f"  missing {m}")
    print(f"profile {prof}: " + (f"{len(missing)} input(s) missing (commands above)" if missing else
                                 "every description set, the text encoder's weights and required backbone present"))


def run(args) -> int:
    params = load_profile_params(args.params, args.profile)
    raw_root = Path(args.raw_root if args.raw_root is not None else
                    (params["data"]["raw_root"] if params else "data/raw"))
    datasets = args.datasets or (params["data"]["datasets"] if params else sorted(FAMILY))
    report = []
    for ds in datasets:
        report.append(check_pku(raw_root) if ds == "pku1" else check_ntu(raw_root, ds))
    synth = Path(args.synthetic_root)
    synth_sets = sorted(p.name for p in synth.iterdir() if p.is_dir()) if synth.is_dir() else []
    n_raw = sum(len(r["missing"]) for r in report)
    desc, clip, backbones, prof_missing = [], None, [], []
    if params is not None:
        desc, clip, backbones = check_descriptions(params), check_clip(params), check_backbones(params)
        prof_missing = _profile_missing(desc, clip, backbones)
    n_missing = n_raw + len(prof_missing)
    if args.json:
        profile = None if params is None else {
            "profile": params["profile"], "descriptions": desc, "clip": clip, "backbones": backbones,
            "missing": prof_missing}
        json.dump({"raw_root": str(raw_root), "datasets": report, "synthetic": {"path": str(synth),
                   "present": synth_sets}, "profile": profile, "missing": n_missing}, sys.stdout, indent=1)
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
        if n_raw:
            print(f"{n_raw} raw input(s) missing; the pipeline can still run on the synthetic stand-ins "
                  "(params.yaml data.source: synthetic)")
        if params is None:
            print(f"no {args.params} here: the profile's descriptions, CLIP weights and backbones were not checked")
        else:
            _print_profile(params, desc, clip, backbones, prof_missing)
    return 1 if (args.strict and n_missing) else 0
