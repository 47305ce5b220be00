"""Benchmark and smoke problem for the baselines: a synthetic zero-shot task where transfer is possible.

Every class is a (verb, noun) pair; its text embeddings are random verb and noun vectors (name = their normalised
sum) and its features are a noisy, rectified linear image of them, so an unknown class (a new combination of
known verbs and nouns) can be recognised from text. Run: `python -m star_repro.models.baselines.bench`.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from star_repro.data.splits import ClassSplit
from star_repro.models.baselines.common import Selection, TextInputs, evaluate, fit

#: Tiny settings (the `demo` profile): seconds on a CPU, still well above chance on the synthetic task.
DEMO_CONFIGS: dict[str, dict] = {
    "revise": {"code_dim": 32, "embed_dim": 16, "text_hidden": 32, "lr": 3e-3, "batch_size": 128, "epochs": 40},
    "jpose": {"embed_dim": 16, "text_hidden": 32, "lr": 3e-3, "batch_size": 128, "epochs": 40},
    "cada_vae": {"latent_dim": 16, "cycle_steps": 120, "cross_start": 60, "cycles": 3, "lr": 3e-3,
                 "kl_offset": 30, "kl_ramp": 200, "classifier_lr": 1e-2, "classifier_steps": 100,
                 "zsl_samples_per_class": 100, "gzsl_seen_per_class": 50, "gzsl_unseen_per_class": 100},
    "synse": {"latent_dim": 16, "cycle_steps": 120, "cross_start": 60, "cycles": 3, "lr": 3e-3,
              "kl_offset": 30, "kl_ramp": 200, "text_kl_from_cycle": 2, "classifier_lr": 1e-2,
              "classifier_steps": 100, "zsl_samples_per_class": 100, "gzsl_seen_per_class": 50,
              "gzsl_unseen_per_class": 100},
    "smie": {"hidden": [64, 32], "lr": 2e-3, "batch_size": 64, "epochs": 30, "warmup_epochs": 3,
             "test_layernorm": False},
}


def synthetic_problem(n_verbs: int = 6, n_nouns: int = 6, n_classes: int = 20, n_unknown: int = 5,
                      text_dim: int = 32, feat_dim: int = 64, train_per_class: int = 40, test_per_class: int = 20,
                      noise: float = 0.3, seed: int = 0) -> dict:
    rng = np.random.RandomState(seed)
    pairs = [(v, n) for v in range(n_verbs) for n in range(n_nouns)]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:n_classes]]
    verb_of = np.array([p[0] for p in pairs])
    noun_of = np.array([p[1] for p in pairs])
    # unknown classes: combinations whose verb and noun both occur among the other classes
    unknown: list[int] = []
    for c in rng.permutation(n_classes):
        rest = [k for k in range(n_classes) if k != c and k not in unknown]
        if verb_of[c] in verb_of[rest] and noun_of[c] in noun_of[rest]:
            unknown.append(int(c))
        if len(unknown) == n_unknown:
            break
    verb_vec = rng.randn(n_verbs, text_dim).astype(np.float32)
    noun_vec = rng.randn(n_nouns, text_dim).astype(np.float32)
    verbs, nouns = verb_vec[verb_of], noun_vec[noun_of]
    names = verbs + nouns
    a_v = rng.randn(feat_dim, text_dim).astype(np.float32) / np.sqrt(text_dim)
    a_n = rng.randn(feat_dim, text_dim).astype(np.float32) / np.sqrt(text_dim)
    proto = verbs @ a_v.T + nouns @ a_n.T                           # (C, F)

    def draw(per_class):
        y = np.repeat(np.arange(n_classes), per_class)
        x = np.maximum(proto[y] + 0.5 + noise * rng.randn(len(y), feat_dim), 0).astype(np.float32)
        return x, y.astype(np.int64)

    split = ClassSplit("synthetic", n_classes, unknown)
    x_tr, y_tr = draw(train_per_class)
    keep = split.is_known(y_tr)
    x_te, y_te = draw(test_per_class)
    known = [c for c in range(n_classes) if c not in unknown]
    val_unknown = [int(c) for c in rng.permutation(known)[:n_unknown]]
    return {"train_feats": x_tr[keep], "train_labels": y_tr[keep], "test_feats": x_te, "test_labels": y_te,
            "text": TextInputs(names=names, verbs=verbs, nouns=nouns, descriptions=names),
            "split": split, "val_unknown": val_unknown}


def run_one(method: str, problem: dict, cfg: dict, seed: int = 0, selection: str = "last") -> dict:
    split = problem["split"]
    sel = Selection(selection)
    if selection == "test":
        unk = ~split.is_known(problem["test_labels"])
        sel = Selection("test", feats=problem["test_feats"][unk], labels=problem["test_labels"][unk])
    elif selection == "val":
        sel = Selection("val", val_unknown=problem["val_unknown"])
    t0, c0 = time.perf_counter(), time.process_time()
    model = fit(method, cfg, problem["train_feats"], problem["train_labels"], problem["text"], split, seed=seed,
                selection=sel, progress=False)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    from star_repro.models.baselines.common import best_gamma, scores
    t1 = time.perf_counter()
    s = scores(model, problem["test_feats"])
    score_s = time.perf_counter() - t1
    g = best_gamma(s, problem["test_labels"], model.known_mask)
    m = evaluate(model, problem["test_feats"], problem["test_labels"], gamma=g["gamma"])
    out = {"method": method, "selection": selection, "train_s": round(train_s, 3),
           "train_cpu_s": round(train_cpu, 3), "score_s": round(score_s, 3),
           "train_samples": int(len(problem["train_feats"])), "test_samples": int(len(problem["test_feats"])),
           "zsl_top1": m["zsl_top1"], "seen": m["seen"], "unseen": m["unseen"], "h": m["h"],
           "gamma_test_swept": g["gamma"], "zsl_chance": 100.0 / len(split.unknown)}
    if model.val:
        out["gamma_val"] = model.val["gamma"]
        vm = evaluate(model, problem["test_feats"], problem["test_labels"], gamma=model.val["gamma"])
        out["h_at_gamma_val"] = vm["h"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="revise,jpose,cada_vae,synse,smie")
    ap.add_argument("--selection", default="last", choices=["last", "val", "test"])
    ap.add_argument("--profile", default="demo", choices=["demo", "paper"],
                    help="demo: DEMO_CONFIGS; paper: the public codes' hyper-parameters")
    ap.add_argument("--units", type=int, default=None,
                    help="override the number of epochs (cycles for CADA-VAE/SynSE) to time a fraction of a run")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--unknown", type=int, default=5)
    ap.add_argument("--feat-dim", type=int, default=64)
    ap.add_argument("--text-dim", type=int, default=32)
    ap.add_argument("--train-per-class", type=int, default=40)
    ap.add_argument("--test-per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    side = int(np.ceil(np.sqrt(args.classes))) + 1
    problem = synthetic_problem(n_verbs=side, n_nouns=side, n_classes=args.classes, n_unknown=args.unknown,
                                text_dim=args.text_dim, feat_dim=args.feat_dim,
                                train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                                seed=args.seed)
    for method in args.methods.split(","):
        cfg = dict(DEMO_CONFIGS[method]) if args.profile == "demo" else {}
        if args.units is not None:
            cfg["cycles" if method in ("cada_vae", "synse") else "epochs"] = args.units
        res = run_one(method, problem, cfg, args.seed, args.selection)
        res.update(profile=args.profile, units=args.units,
                   peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
