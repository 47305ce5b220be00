"""`star-repro descriptions ...`: helper commands around the description cache (not pipeline stages).

fill (asks the OpenAI API; never run by `dvc repro`), import (released files), build-authored (the project's own
text), status, diff (per class and part, terminal or Markdown) and textconv (the git diff driver). The pipeline
stage that reads the cache is `star-repro describe`. Library imports happen inside the handlers so that
`star-repro --help` stays fast.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DATASETS = ("ntu60", "ntu120", "pku1")
CACHE_DATASETS = ("ntu120", "pku1")
PARTS = (6, 4, 2)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "descriptions", help="fill, import, build, inspect and diff the LLM part-description cache",
        description="Manage the description cache under prompts/cache/{set}/{dataset}_{P}part.json. Sets: "
        "'authored' (built from prompts/authored/*.yaml), 'openai' (API answers), 'imported-star' / "
        "'imported-gap' (released files). The pipeline reads one set offline via `star-repro describe`; "
        "see docs/descriptions.md.")
    dsub = p.add_subparsers(dest="desc_command", metavar="ACTION")
    dsub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    f = dsub.add_parser(
        "fill", formatter_class=fmt, help="ask the OpenAI API for missing or stale descriptions",
        description="Ask the chat-completions API for every missing or stale (class, part) of one cache file, "
        "using a template of prompts/templates.yaml.\nThe cache is rewritten atomically after every answer: "
        "an interrupted fill resumes where it stopped and never asks again for a saved entry.\n"
        "Key: OPENAI_API_KEY, or OPENAI_API_KEY=... in .env (never logged or written).",
        epilog="examples:\n  star-repro descriptions fill --dataset ntu120 --partition 6 --dry-run\n"
        "  star-repro descriptions fill --dataset pku1 --partition 6 4 2 --concurrency 8\n"
        "  star-repro descriptions fill --dataset ntu120 --template per-class-json --set openai-json")
    f.add_argument("--dataset", required=True, choices=DATASETS, help="ntu60 fills the first 60 ntu120 classes")
    f.add_argument("--partition", type=int, nargs="+", choices=PARTS, default=[6], help="partition(s) (default 6)")
    f.add_argument("--set", dest="source_set", default="openai", help="cache set to fill (default openai)")
    f.add_argument("--template", default=None, help="template name (default: the file's default)")
    f.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="only this class (repeatable); default all classes of the dataset")
    f.add_argument("--force", action="store_true", help="ask again even for valid entries (a fresh sample)")
    f.add_argument("--dry-run", action="store_true", help="list what would be asked and estimate tokens; no key needed")
    f.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    f.add_argument("--max-attempts", type=int, default=6, help="attempts per request before giving up (default 6)")
    f.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one answer (default 60)")
    f.add_argument("--backoff-base", type=float, default=1.0, help="first retry delay in seconds, doubled each time")
    f.add_argument("--backoff-max", type=float, default=60.0, help="longest retry delay (also caps Retry-After)")
    f.add_argument("--base-url", default=None, help="API base URL (default: OPENAI_BASE_URL or api.openai.com)")
    f.add_argument("--env-file", default=".env", help="file to read OPENAI_API_KEY from when unset (default .env)")
    f.add_argument("--cache-root", default="prompts/cache", help="cache folder (default prompts/cache)")
    f.add_argument("--templates", default="prompts/templates.yaml", help="template file")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(handler=_fill)

    i = dsub.add_parser(
        "import", formatter_class=fmt, help="import a released description file (STAR or GAP format)",
        description="Import released part descriptions into prompts/cache/{set}/ with provenance 'imported' and "
        "the file's sha256.\n  star: 'name; Head: ...; Hand: ...; Arm: ...; Hip: ...; Leg: ...; Foot: ...'\n"
        "  gap:  'name;head text;hand text;arm text;hip text;leg text;foot text' (+ optional --label-map)\n"
        "Release names are matched to the dataset's class names; an unmatched name is an error with candidates.",
        epilog="example:\n  star-repro descriptions import --format star --dataset ntu120 "
        "../STAR/text/ntu120_part_descriptions.txt")
    i.add_argument("file", help="the released text file")
    i.add_argument("--format", required=True, choices=("star", "gap"))
    i.add_argument("--dataset", required=True, choices=DATASETS)
    i.add_argument("--partition", type=int, choices=PARTS, default=6)
    i.add_argument("--set", dest="source_set", default=None, help="cache set (default imported-FORMAT)")
    i.add_argument("--label-map", default=None, help="GAP's class-name file, checked line by line")
    i.add_argument("--name-map", default=None, help="TSV 'release name<TAB>class name' for names that do not match")
    i.add_argument("--model", default=None, help="model that wrote the release, if known (recorded as provenance)")
    i.add_argument("--allow-partial", action="store_true", help="accept a file that lacks some classes")
    i.add_argument("--replace", action="store_true", help="drop existing entries of the target file first")
    i.add_argument("--cache-root", default="prompts/cache")
    i.set_defaults(handler=_import)

    b = dsub.add_parser(
        "build-authored", help="build the 'authored' cache from prompts/authored/{ds}.yaml",
        description="Validate prompts/authored/{ntu120,pku1}.yaml (every class, every partition, every part, "
        "non-empty; errors name the line) and write prompts/cache/authored/{ds}_{6,4,2}part.json.")
    b.add_argument("--dataset", nargs="+", choices=CACHE_DATASETS, default=list(CACHE_DATASETS))
    b.add_argument("--partition", type=int, nargs="+", choices=PARTS, default=list(PARTS))
    b.add_argument("--authored-dir", default="prompts/authored")
    b.add_argument("--cache-root", default="prompts/cache")
    b.add_argument("--allow-partial", action="store_true",
                   help="build from an unfinished file (absent classes are skipped)")
    b.set_defaults(handler=_build_authored)

    s = dsub.add_parser(
        "status", help="completeness and staleness of every cache file",
        description="One line per cache file: entries present / expected, missing, stale, and their sources.")
    s.add_argument("--set", dest="sets", action="append", default=None, help="only this set (repeatable)")
    s.add_argument("--dataset", nargs="+", choices=CACHE_DATASETS, default=None)
    s.add_argument("--partition", type=int, nargs="+", choices=PARTS, default=None)
    s.add_argument("--template", default=None, help="template API entries must match (default: the file's default)")
    s.add_argument("--templates", default="prompts/templates.yaml")
    s.add_argument("--cache-root", default="prompts/cache")
    s.add_argument("-v", "--verbose", action="store_true", help="list every missing or stale entry")
    s.add_argument("--check", action="store_true", help="exit 1 when anything is missing or stale")
    s.set_defaults(handler=_status)

    d = dsub.add_parser(
        "diff", formatter_class=fmt, help="per-class, per-part changes between two caches or two git revisions",
        description="Compare two cache files, two REV:PATH objects, or every cache file between two git "
        "revisions (WORKTREE = the working tree).",
        epilog="examples:\n  star-repro descriptions diff prompts/cache/authored/ntu120_6part.json "
        "prompts/cache/imported-star/ntu120_6part.json\n  star-repro descriptions diff origin/main WORKTREE "
        "--format markdown > comment.md")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--path", action="append", default=None, help="with two revisions: only this cache file")
    d.add_argument("--format", choices=("text", "markdown"), default="text")
    d.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    d.add_argument("--no-provenance", action="store_true", help="hide entries whose text did not change")
    d.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences (like git diff)")
    d.set_defaults(handler=_diff)

    t = dsub.add_parser(
        "textconv", help="print a cache as readable lines (git diff driver)",
        description="Print one 'class / part: text' line per entry with its provenance below; git runs this "
        "through `diff.starcache.textconv` (see docs/descriptions.md). A file that is not a valid cache is "
        "printed unchanged.")
    t.add_argument("file")
    t.set_defaults(handler=_textconv)


def _fill(args: argparse.Namespace) -> int:
    from star_repro.text.llm_fill import FillOptions, fill_or_raise, format_plan, plan_fill

    for P in args.partition:
        opts = FillOptions(
            dataset=args.dataset, partition=P, source_set=args.source_set, template=args.template,
            classes=args.classes, force=args.force, cache_root=args.cache_root, templates_path=args.templates,
            base_url=args.base_url, env_file=args.env_file, concurrency=args.concurrency,
            max_attempts=args.max_attempts, backoff_base=args.backoff_base, backoff_max=args.backoff_max,
            timeout=args.timeout, progress=not args.no_progress)
        if args.dry_run:
            print(format_plan(plan_fill(opts)))
        else:
            fill_or_raise(opts)
    return 0


def _import(args: argparse.Namespace) -> int:
    from star_repro.text.importers import import_descriptions

    r = import_descriptions(args.file, args.format, args.dataset, partition=args.partition,
                            source_set=args.source_set, cache_root=args.cache_root, model=args.model,
                            name_map=args.name_map, label_map=args.label_map, allow_partial=args.allow_partial,
                            replace=args.replace)
    print(f"imported {r.classes} classes from {args.file} into {r.path}: {r.added} added, {r.changed} changed, "
          f"{r.unchanged} unchanged")
    return 0


def _build_authored(args: argparse.Namespace) -> int:
    from star_repro.text.descriptions import build_authored

    for ds in args.dataset:
        for path in build_authored(ds, authored_dir=args.authored_dir, cache_root=args.cache_root,
                                   partitions=args.partition, allow_partial=args.allow_partial):
            print(f"wrote {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from star_repro.text.descriptions import cache_status, fill_command

    rows = cache_status(args.cache_root, sets=args.sets, datasets=args.dataset, partitions=args.partition,
                        template=args.template, templates_path=args.templates)
    if not rows:
        print(f"no cache files under {args.cache_root}")
        return 1 if args.check else 0
    w = max(len(r.file) for r in rows)
    print(f"{'file':<{w}}  {'entries':>9}  {'missing':>7}  {'stale':>5}  sources")
    bad = False
    for r in rows:
        miss = sum(p.kind == "missing" for p in r.problems)
        stale = len(r.problems) - miss
        src = ", ".join(f"{k} {v}" for k, v in sorted(r.sources.items()))
        print(f"{r.file:<{w}}  {r.present:>4}/{r.expected:<4}  {miss:>7}  {stale:>5}  {src}")
        if r.problems:
            bad = True
            if args.verbose:
                for p in r.problems:
                    print(f"    {p.kind:<8} {p.cls} / {p.part}" + (f": {p.reason}" if p.reason else ""))
                print(f"    fix: {fill_command(r.source_set, r.dataset, r.partition)}")
    return 1 if (bad and args.check) else 0


def _diff(args: argparse.Namespace) -> int:
    from star_repro.text.desc_diff import diff_specs, render_markdown, render_text

    diffs = diff_specs(args.a, args.b, paths=args.path)
    if args.format == "markdown":
        sys.stdout.write(render_markdown(diffs, provenance=not args.no_provenance))
    else:
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                           and not os.environ.get("NO_COLOR"))
        sys.stdout.write(render_text(diffs, color=color, provenance=not args.no_provenance))
    changed = any(c.kind != "provenance" or not args.no_provenance for d in diffs for c in d.changes)
    return 1 if (args.exit_code and changed) else 0


def _textconv(args: argparse.Namespace) -> int:
    from star_repro.errors import StarReproError
    from star_repro.text.desc_diff import textconv

    raw = Path(args.file).read_bytes()
    try:
        out = textconv(raw.decode("utf-8"), args.file)
    except (StarReproError, UnicodeDecodeError) as exc:
        print(f"star-repro descriptions textconv: not a valid cache, shown as is ({exc})", file=sys.stderr)
        sys.stdout.buffer.write(raw)
        return 0
    sys.stdout.write(out)
    return 0
