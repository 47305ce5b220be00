"""`star-repro fetch`: the opt-in download of the paper's public inputs (never part of the DAG); see
star_repro.fetch."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "fetch", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="download and verify the CLIP weights and the authors' released descriptions (opt-in)",
        description="Download the public inputs of the paper profiles, check each file's pinned sha256, put it "
        "where the pipeline looks and import the descriptions:\n"
        "  clip          OpenAI's ViT-L-14-336px.pt -> data/weights/\n"
        "  descriptions  the STAR authors' 6-part descriptions (NTU-120, PKU-MMD I) at a pinned commit ->\n"
        "                data/releases/star/, imported into prompts/cache/imported-star/\n"
        "Partial downloads resume (HTTP Range). Never run by `dvc repro` or Snakemake.",
        epilog="examples:\n  star-repro fetch\n  star-repro fetch descriptions\n"
        "  star-repro fetch clip --mirror https://my.mirror/clip   # same file names, same hashes")
    p.add_argument("what", nargs="*", default=[], metavar="{clip,descriptions}",
                   help="what to fetch (default: both)")
    p.add_argument("--weights-dir", default=None, help="where the CLIP file goes (default data/weights)")
    p.add_argument("--releases-dir", default="data/releases/star", help="where the released text files go")
    p.add_argument("--cache-root", default="prompts/cache", help="description cache root for the import")
    p.add_argument("--mirror", default=None, help="fetch the same file names from this URL folder instead")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry (default 60)")
    p.add_argument("--attempts", type=int, default=5, help="attempts per file, each resuming (default 5)")
    p.add_argument("--backoff", type=float, default=2.0, help="first wait between attempts, doubled each time")
    p.set_defaults(handler=run)


def run(args) -> int:
    from star_repro.fetch import WHAT, fetch

    what = tuple(dict.fromkeys(args.what)) or WHAT
    for line in fetch(what, weights_dir=args.weights_dir, releases_dir=args.releases_dir,
                      cache_root=args.cache_root, mirror=args.mirror, timeout=args.timeout,
                      attempts=args.attempts, backoff=args.backoff):
        print(line)
    return 0
