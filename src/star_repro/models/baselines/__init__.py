"""The five baselines of STAR's Tables 2-5 (ReViSE, JPoSE, CADA-VAE, SynSE, SMIE) on pooled backbone features.

Usage (arrays in, arrays out; see docs/baselines.md):

    model = fit("synse", cfg, train_feats, train_labels, TextInputs(names, verbs=v, nouns=n), split, seed=0,
                selection=Selection("test", feats=zsl_feats, labels=zsl_labels))
    s = scores(model, test_feats)            # (N, C) over all classes; γ is subtracted from known columns
    m = evaluate(model, test_feats, test_labels, gamma=0.05)   # percent: zsl_top1, seen, unseen, h
"""
from __future__ import annotations

from star_repro.models.baselines.cada_vae import CADAVAE
from star_repro.models.baselines.common import (_METHODS, BaselineModel, Selection, TextInputs, best_gamma, evaluate,
                                                fit,
                                                from_checkpoint, predict_gzsl, predict_zsl, scores, split_settings,
                                                to_checkpoint)
from star_repro.models.baselines.jpose import JPoSE
from star_repro.models.baselines.revise import ReViSE
from star_repro.models.baselines.smie import SMIE, temporal_mask
from star_repro.models.baselines.synse import SynSE

BASELINES = {"revise": ReViSE, "jpose": JPoSE, "cada_vae": CADAVAE, "synse": SynSE, "smie": SMIE}
assert all(_METHODS[name] is cls for name, cls in BASELINES.items()), "a baseline class did not register itself"

__all__ = ["BASELINES", "BaselineModel", "Selection", "TextInputs", "best_gamma", "evaluate", "fit", "from_checkpoint",
           "predict_gzsl", "predict_zsl", "scores", "split_settings", "temporal_mask", "to_checkpoint"]
