"""Training STAR on the known classes of a split (STAR_SPEC §9.1), with explicit model selection and resume.

Run layout (docs/formats.md): `out_dir` gets `model.pt` (full state dict of the selected epoch, authors' key
names, backbone included because its BatchNorm statistics drift under `bn_mode: drift`), `history.tsv`,
`config.json` (resolved settings and inputs fingerprint), `selection.json` (selection mode, selected epoch, the
validation split's hash) — all deterministic for a seed on CPU — and `timing.json` (throughput; not
deterministic, not needed downstream); `checkpoint_dir` (default `out_dir`) holds `train_state.pt`, rewritten
atomically after every epoch, from which an interrupted run resumes exactly (every epoch's randomness is derived
from (seed, epoch)).

Feature cache: when the backbone output cannot change between epochs — `bn_mode: frozen` and no augmentation on
that split (`augment.train: false` for training data, `augment.test: false` for validation/test) — backbone
features are computed once and kept in memory (up to `cache_max_mb`); the demo profile is set up this way.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star_repro.errors import InputFormatError, StarReproError
from star_repro.io import save_torch_atomic, write_json_atomic, write_text_atomic
from star_repro.training.star_cfg import gamma_setting, resolve_star_cfg, uses_validation

HISTORY_COLUMNS = ("epoch", "lr", "loss", "mpce", "sce", "gce", "train_acc", "val_acc", "test_zsl")
VAL_SEED_OFFSET = 7919  # keeps the validation draw independent of other uses of the seed
TTA_SEED_OFFSET = 104729
CONTROL_SEED_OFFSET = 1299709  # the negative control's derangement of unknown-class text


# ---------------------------------------------------------------------------------------------- inputs
def dataset_key(processed_dir: str | Path) -> str:
    return Path(processed_dir).name


def class_names(dataset: str, num_classes: int) -> list[str]:
    from star_repro.data.classes import DATASET_CLASSES

    names = DATASET_CLASSES.get(dataset)
    if names is None:
        return [f"class_{k}" for k in range(num_classes)]
    if len(names) != num_classes:
        raise StarReproError(f"dataset {dataset} has {len(names)} classes but the embeddings have {num_classes}")
    return list(names)


def load_embeddings(path: str | Path, num_parts: int) -> tuple[np.ndarray, np.ndarray]:
    """names (C, D) and parts (K, C, D) from an embeddings npz (docs/formats.md), checked."""
    path = Path(path)
    if not path.is_file():
        raise StarReproError(f"{path}: embeddings file not found (run `star-repro embed` for this dataset/partition)")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001
        raise InputFormatError(path, None, f"not a readable npz archive ({exc})") from None
    for key in ("names", "parts"):
        if key not in arrays:
            raise InputFormatError(path, None, f"key {key!r} missing (have {sorted(arrays)})")
    names, parts = arrays["names"], arrays["parts"]
    if names.ndim != 2:
        raise InputFormatError(path, None, f"key 'names': expected shape (C, D), got {names.shape}")
    if parts.ndim != 3 or parts.shape[0] != num_parts or parts.shape[1:] != names.shape:
        raise InputFormatError(path, None, f"key 'parts': expected shape ({num_parts}, {names.shape[0]}, "
                               f"{names.shape[1]}) for a {num_parts}-part partition, got {parts.shape}")
    for key, arr in (("names", names), ("parts", parts)):
        if not np.isfinite(arr).all():
            raise InputFormatError(path, None, f"key {key!r} holds non-finite values")
    return names.astype(np.float32), parts.astype(np.float32)


def unknown_derangement(unknown, seed: int) -> dict[int, int]:
    """class -> the class whose text it gets: a random cycle through the unknown classes (Sattolo's shuffle), so
    no unknown class keeps its own text; fixed by the seed."""
    order = [int(u) for u in unknown]
    if len(order) < 2:
        raise StarReproError(f"text_control derange_unknown needs at least 2 unknown classes, got {order}")
    rng = np.random.default_rng(seed + CONTROL_SEED_OFFSET)
    cycle = list(order)
    for i in range(len(cycle) - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: Sattolo, a single cycle
        cycle[i], cycle[j] = cycle[j], cycle[i]
    return dict(zip(order, cycle))


def apply_text_control(names: np.ndarray, parts: np.ndarray, split, cfg: Mapping
                       ) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """The negative control of `text_control: derange_unknown`: every unknown class's name and part embeddings
    replaced by another unknown class's. Known classes are untouched, so training sees the same text as the full
    model (up to SCE's unknown-class denominators) and only the unknown classes' semantics are broken: a STAR that
    really transfers through text must then score at chance. Returns (names, parts, the mapping or None)."""
    if cfg["text_control"] == "none":
        return names, parts, None
    mapping = unknown_derangement(split.unknown, int(cfg["seed"]))
    src, dst = list(mapping.values()), list(mapping.keys())
    names, parts = names.copy(), parts.copy()
    names[dst], parts[:, dst] = names[src], parts[:, src]
    return names, parts, mapping


def load_backbone(backbone_dir: str | Path, split=None):
    """The pretrained Shift-GCN of `data/pretrain/{ds}_{protocol}_{split}/` (model.pt + config.json), frozen.

    When config.json lists the known classes it was trained on, they must equal the split's: a backbone
    pretrained on another split has seen this split's unknown classes.
    """
    from star_repro.models.shiftgcn import ShiftGCN, load_authors_checkpoint

    backbone_dir = Path(backbone_dir)
    cfg_path, model_path = backbone_dir / "config.json", backbone_dir / "model.pt"
    for p in (cfg_path, model_path):
        if not p.is_file():
            raise StarReproError(f"{p} is missing: run `star-repro pretrain` for this dataset/protocol/split")
    try:
        conf = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFormatError(cfg_path, exc.lineno, f"not valid JSON: {exc.msg}") from None
    if not isinstance(conf, dict):
        raise InputFormatError(cfg_path, 1, "expected a JSON object")
    for key in ("width", "num_class"):
        if key not in conf:
            raise InputFormatError(cfg_path, None, f"key {key!r} missing (written by `star-repro pretrain`)")
    known = conf.get("known_classes", conf.get("known"))
    if split is not None and known is None:
        raise InputFormatError(cfg_path, None, "key 'known_classes' missing: cannot check that the backbone never "
                                               "saw this split's unknown classes")
    if split is not None and sorted(int(k) for k in known) != list(split.known):
        raise StarReproError(f"{cfg_path}: the backbone was pretrained on other known classes than split "
                             f"{split.name}'s ({sorted(known)[:8]}...); it may have seen this split's unknown classes")
    model = ShiftGCN(int(conf["num_class"]), width=conf["width"],
                     shift_formula=conf.get("shift_formula", "lerp"))  # older backbones: lerp
    load_authors_checkpoint(model, model_path)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, conf


def check_backbone_window(bconf: Mapping, cfg: Mapping, where) -> None:
    """STAR must feed the backbone clips of the length it was pretrained on (64 frames in the authors' code)."""
    window = (bconf.get("config") or {}).get("window")
    if window is not None and int(window) != int(cfg["augment"]["window"]):
        raise StarReproError(f"star.augment.window is {cfg['augment']['window']} but the backbone ({where}) was "
                             f"pretrained on {window}-frame windows; set them equal")


def validation_split(train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of each known class's training samples (at least 1 when the class has ≥ 2),
    chosen by a seeded permutation; returns (train, val) indices, each in the original order."""
    rng = np.random.default_rng(seed + VAL_SEED_OFFSET)
    val_mask = np.zeros(len(train_idx), bool)
    lab = labels[train_idx]
    for c in np.unique(lab):
        pos = np.flatnonzero(lab == c)
        if len(pos) < 2:
            continue
        k = min(len(pos) - 1, max(1, int(round(fraction * len(pos)))))
        val_mask[rng.permutation(pos)[:k]] = True
    return train_idx[~val_mask], train_idx[val_mask]


@dataclass
class RunData:
    """Everything a STAR run reads, resolved once (shared by training and evaluation)."""
    ds: object
    dataset: str
    split: object
    cfg: dict
    names: np.ndarray
    parts: np.ndarray
    class_names: list
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray   # GZSL test set (all protocol test samples)
    zsl_idx: np.ndarray    # unknown-class test samples
    is_pku: bool           # PKU-MMD layout (samples carry a video name)
    text_mapping: dict | None = None  # negative control: unknown class -> the class whose text it was given


def prepare_run(processed_dir, protocol: str, split, embeddings_npz, cfg: Mapping) -> RunData:
    from star_repro.data.dataset import ProcessedDataset
    from star_repro.data.splits import assert_no_unknown, evaluation_indices, training_indices

    dataset = dataset_key(processed_dir)
    cfg = resolve_star_cfg(cfg, dataset)
    ds = ProcessedDataset(processed_dir)
    names, parts = load_embeddings(embeddings_npz, cfg["partition"])
    if split.num_classes != names.shape[0]:
        raise StarReproError(f"split {split.name} has {split.num_classes} classes but {embeddings_npz} has "
                             f"{names.shape[0]}")
    names, parts, text_mapping = apply_text_control(names, parts, split, cfg)
    if len(ds.labels) and (ds.labels.min() < 0 or ds.labels.max() >= split.num_classes):
        raise StarReproError(f"{processed_dir}: labels outside 0..{split.num_classes - 1}")
    prot = ds.protocol(protocol)
    train_idx = training_indices(ds.labels, prot["train"], split)
    val_idx = np.zeros(0, np.int64)
    if uses_validation(cfg):
        train_idx, val_idx = validation_split(train_idx, ds.labels, cfg["val_fraction"], cfg["seed"])
        assert_no_unknown(ds.labels[val_idx], split)
    assert_no_unknown(ds.labels[train_idx], split)
    if len(train_idx) == 0:
        raise StarReproError(f"{processed_dir}: protocol {protocol} has no training samples of known classes")
    test_idx = evaluation_indices(ds.labels, prot["test"], split, "gzsl")
    zsl_idx = evaluation_indices(ds.labels, prot["test"], split, "zsl")
    is_pku = any(v for v in ds.videos)
    if is_pku and cfg["augment"]["pku_passthrough"] and ds.joints.shape[2] != cfg["augment"]["window"]:
        raise StarReproError(f"star.augment.window: PKU-MMD clips are used as stored ({ds.joints.shape[2]} frames) "
                             f"under pku_passthrough, so window must be {ds.joints.shape[2]}, not "
                             f"{cfg['augment']['window']}")
    return RunData(ds, dataset, split, cfg, names, parts, class_names(dataset, names.shape[0]),
                   train_idx, val_idx, test_idx, zsl_idx, is_pku, text_mapping)


def build_model(run: RunData, backbone, device):
    import torch

    from star_repro.models.star import StarModel, StarModelConfig

    cfg = run.cfg
    mcfg = StarModelConfig(
        partition=cfg["partition"], part_pooling=cfg["part_pooling"], heads=cfg["heads"], m=cfg["m"],
        attn_dim=cfg["attn_dim"], text_hidden=cfg["text_hidden"], use_attention=cfg["use_attention"],
        use_va_prompt=cfg["use_va_prompt"], use_sp_prompt=cfg["use_sp_prompt"], bn_mode=cfg["bn_mode"],
        va_prompt_std=cfg["init"]["va_prompt_std"], w_std=cfg["init"]["w_std"],
        sp_prompt_std=cfg["init"]["sp_prompt_std"])
    torch.manual_seed(cfg["seed"])
    model = StarModel(backbone, torch.from_numpy(run.names), torch.from_numpy(run.parts), mcfg)
    return model.to(device)


def loss_config(cfg: Mapping):
    from star_repro.models.losses import LossConfig

    return LossConfig(similarity=cfg["similarity"], temperature=float(cfg["temperature"]),
                      ce_eps=float(cfg["ce_eps"]), sce_classes=cfg["sce_classes"], alpha=float(cfg["alpha"]),
                      beta=float(cfg["beta"]), use_mpce=cfg["use_mpce"], use_sce=cfg["use_sce"],
                      use_gce=cfg["use_gce"])


# ---------------------------------------------------------------------------------------------- data feed
class SkeletonFeed:
    """Batches of one split: raw skeletons through the feeder (per batch, through the backbone), or backbone
    features computed once and kept when they cannot change (see module doc)."""

    def __init__(self, run: RunData, indices: np.ndarray, targets: np.ndarray, *, augment: bool, seed: int,
                 device, num_workers: int):
        from star_repro.training.feeder import SkeletonDataset

        a = run.cfg["augment"]
        self.indices = np.asarray(indices, np.int64)
        self.targets = np.asarray(targets, np.int64)
        # PKU-MMD clips (already resized to 64 frames) are used unchanged, as the authors' PKU feeder does.
        passthrough = bool(a["pku_passthrough"]) and run.is_pku
        self.augment = augment and not passthrough
        self.device = device
        self.num_workers = num_workers
        self.dataset = SkeletonDataset(
            run.ds.joints, run.ds.frames, self.indices, self.targets, train=self.augment, window=a["window"],
            p_interval=list(a["p_interval"]) if self.augment else [a["center_p"]],
            random_rot=bool(a["random_rot"]) and self.augment, rot_theta=a["rot_theta"], seed=seed,
            passthrough=passthrough)
        self.features = None

    def __len__(self) -> int:
        return len(self.indices)

    def cacheable(self, bn_mode: str) -> bool:
        return bn_mode == "frozen" and not self.augment

    def _loader(self, batches):
        import torch

        from star_repro.training.feeder import worker_init

        return torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                                           persistent_workers=False, worker_init_fn=worker_init)

    def build_cache(self, model, batch_size: int, max_mb: float, progress: bool, desc: str,
                    store: Mapping | None = None) -> bool:
        """Compute backbone features once; returns False (and keeps per-batch mode) when they would not fit.

        `store` ({"dir", "key"} from `feature_store`): also keep them on disk under a content key, so the other
        runs on the same backbone and samples (ablations, m-variants, evaluation) read instead of recomputing.
        """
        import torch

        was_training = model.training
        model.eval()
        with torch.no_grad():
            probe = model.backbone_features(self.dataset[0][0].unsqueeze(0).to(self.device))
        mb = probe[0].numel() * 4 * len(self) / 2 ** 20
        if mb > max_mb:
            model.train(was_training)
            return False

        def compute():
            feats = []
            with torch.no_grad():
                for x, _, _ in _tqdm(self._loader(_chunks(len(self), batch_size)), progress, f"{desc} features"):
                    feats.append(model.backbone_features(x.float().to(self.device)))
            return torch.cat(feats, 0).cpu().numpy()

        if store is None:
            feats = compute()
        else:
            from star_repro.training.feature_cache import cached_features, shift_formula_key

            # batch size, device and threads too: they can change features at rounding level, and a run's numbers
            # must not depend on which run happened to fill the cache first
            key = {**store["key"], "indices_sha256": _idx_hash(self.indices), "batch_size": int(batch_size),
                   "device": str(self.device), "threads": torch.get_num_threads(),
                   **shift_formula_key(model.pretraining_model)}
            feats, _ = cached_features(store["dir"], key, self.indices, compute)
        model.train(was_training)
        self.features = torch.from_numpy(np.ascontiguousarray(feats, np.float32)).to(self.device)
        return True

    def batches(self, model, chunks: list[np.ndarray], epoch: int):
        """Yield (backbone features, targets, positions) for each chunk of positions into this split."""
        import torch

        if self.features is not None:
            tgt = torch.from_numpy(self.targets).to(self.device)
            for c in chunks:
                ct = torch.from_numpy(np.asarray(c, np.int64)).to(self.device)
                yield self.features[ct], tgt[ct], c
            return
        self.dataset.set_epoch(epoch)
        for c, (x, y, _) in zip(chunks, self._loader([list(map(int, c)) for c in chunks])):
            yield model.backbone_features(x.float().to(self.device)), y.long().to(self.device), c


def feature_store(run: RunData, backbone_dir, cache_dir) -> dict | None:
    """Content key of this run's cached backbone features (None: no disk cache). Everything the features depend
    on is in it: backbone weights, the processed samples, the deterministic feeder settings, the person pooling."""
    if cache_dir is None or run.cfg["bn_mode"] != "frozen":
        return None
    from star_repro.provenance import file_digest
    from star_repro.training.feature_cache import dataset_signature

    a = run.cfg["augment"]
    return {"dir": Path(cache_dir), "key": {
        "format": "star-backbone-features-1", "backbone_sha256": file_digest(Path(backbone_dir) / "model.pt"),
        **dataset_signature(run.ds),
        "feeder": {"window": a["window"], "center_p": a["center_p"],
                   "passthrough": bool(a["pku_passthrough"]) and run.is_pku},
        "part_pooling": run.cfg["part_pooling"]}}


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


def _tqdm(it, progress: bool, desc: str, total=None):
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, disable=not progress, leave=False, dynamic_ncols=True)


def embed_split(model, feed: SkeletonFeed, batch_size: int, progress: bool = False, desc: str = "eval"):
    """Global and part skeleton embeddings of a whole split, in split order, in eval mode."""
    import torch

    model.eval()
    glob, part = [], []
    chunks = [np.asarray(c) for c in _chunks(len(feed), batch_size)]
    with torch.no_grad():
        for feat, _, _ in _tqdm(feed.batches(model, chunks, 0), progress, desc, len(chunks)):
            p, g = model.skeleton_embed(feat)
            glob.append(g)
            part.append(p)
    if not glob:
        return torch.zeros(0, model.cfg.m), torch.zeros(0, model.num_parts, model.cfg.m)
    return torch.cat(glob).cpu(), torch.cat(part).cpu()


def class_scores(model, glob, cfg: Mapping):
    """Inference scores (N, C) of global embeddings against all class-name projections (temperature 1: γ lives
    on the raw similarity scale)."""
    import torch

    from star_repro.models.losses import similarity

    with torch.no_grad():
        names, _ = model.text_embed()
        return similarity(glob.to(names.device), names, cfg["similarity"]).cpu().numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------- training
def lr_at(epoch: int, opt_cfg: Mapping) -> float:
    """base_lr · decay^{#(epoch ≥ step)} with 0-based epochs, no warm-up (STAR_SPEC §9.1)."""
    from star_repro.training.common import step_lr

    return step_lr(float(opt_cfg["lr"]), epoch, list(opt_cfg["steps"]), float(opt_cfg["lr_decay"]))


def _fingerprint(run: RunData, protocol: str, embeddings_npz, backbone_dir) -> str:
    from star_repro.io import sha256_text

    from star_repro.provenance import file_record

    root, bdir = Path(run.ds.root), Path(backbone_dir)
    inputs = [Path(embeddings_npz), bdir / "model.pt", bdir / "config.json", root / "samples.tsv",
              root / "protocols.json", root / "joints.npy"]
    key = {"cfg": run.cfg, "protocol": protocol, "split": [run.split.name, list(run.split.unknown)],
           "dataset": run.dataset, "n_train": int(len(run.train_idx)),
           "train_sha": sha256_text(",".join(map(str, run.train_idx.tolist()))),
           "inputs": [file_record(p) for p in inputs]}
    return sha256_text(json.dumps(key, sort_keys=True, default=str))


def _history_tsv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(HISTORY_COLUMNS)
    for r in rows:
        w.writerow(["" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c])
                    for c in HISTORY_COLUMNS])
    return buf.getvalue()


def _training_state(model, cfg: Mapping) -> dict:
    """What a checkpoint must hold to resume: the head, plus the backbone only when training can change it.

    With `bn_mode: frozen` the backbone is exactly the pretrained input (its hash is in the fingerprint), so
    per-epoch checkpoints leave it out; saving it every epoch was ~10 % of a demo run.
    """
    if cfg["bn_mode"] == "frozen":
        return model.head_state_dict()
    return model.state_dict()


def _load_training_state(model, state: Mapping, where: Path) -> None:
    from star_repro.models.star import AUTHORS_BACKBONE_PREFIX

    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(AUTHORS_BACKBONE_PREFIX)]
    if missing or unexpected:
        raise StarReproError(f"{where}: training state does not fit the model (missing {missing[:5]}, unexpected "
                             f"{list(unexpected)[:5]}); delete it to train from the start")


class PlainSGD:
    """SGD with momentum, Nesterov and L2 weight decay, step for step the arithmetic of `torch.optim.SGD`
    (foreach path, dampening 0). Written out because constructing a torch optimiser imports torch._dynamo,
    which costs seconds in every one of the demo's many short training processes (a test checks equality).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.momentum, self.nesterov, self.weight_decay = float(lr), float(momentum), nesterov, \
            float(weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.buffers: list = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            idx = [i for i, p in enumerate(self.params) if p.grad is not None]
            if not idx:
                return
            params = [self.params[i] for i in idx]
            grads = [self.params[i].grad for i in idx]
            if self.weight_decay:
                grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
            if self.momentum:
                bufs = [self.buffers[i] for i in idx]
                if all(b is not None for b in bufs):
                    torch._foreach_mul_(bufs, self.momentum)
                    torch._foreach_add_(bufs, grads, alpha=1.0)
                else:
                    for j, i in enumerate(idx):
                        if self.buffers[i] is None:
                            self.buffers[i] = torch.clone(grads[j]).detach()
                        else:
                            self.buffers[i].mul_(self.momentum).add_(grads[j], alpha=1.0)
                    bufs = [self.buffers[i] for i in idx]
                if self.nesterov:
                    grads = torch._foreach_add(grads, bufs, alpha=self.momentum)
                else:
                    grads = bufs
            torch._foreach_add_(params, grads, alpha=-self.lr)

    def state_dict(self) -> dict:
        return {"buffers": [None if b is None else b.detach().clone() for b in self.buffers]}

    def load_state_dict(self, state: Mapping) -> None:
        bufs = list(state["buffers"])
        if len(bufs) != len(self.params):
            raise StarReproError(f"optimizer state has {len(bufs)} buffers for {len(self.params)} parameters")
        self.buffers = [None if b is None else b.to(p.device) for b, p in zip(bufs, self.params)]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Set torch's intra-op threads for one call (None: $OMP_NUM_THREADS or all cores) and restore them after."""
    import torch

    from star_repro.training.common import set_threads

    saved = torch.get_num_threads()
    try:
        set_threads(threads)
        yield
    finally:
        torch.set_num_threads(saved)


def train_star(processed_dir, protocol: str, split, embeddings_npz, backbone_dir, cfg: Mapping, out_dir,
               device: str = "cpu", progress: bool = True, checkpoint_dir=None, threads: int | None = None,
               feature_cache=None) -> dict:
    """Train STAR for one experiment; returns config.json, selection.json and timing.json merged.

    `device`: cpu, cuda, cuda:K or auto; `threads`: CPU intra-op threads (None: $OMP_NUM_THREADS or all cores).
    Selection `last` keeps the final epoch; `val` the epoch with the best known-class top-1 on the held-out
    validation samples (ties: the later epoch); `test` the epoch with the best test ZSL top-1 — what the authors
    effectively did — and the run is labelled "test-selected" everywhere.
    """
    with torch_threads(threads):
        return _train_star(processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, out_dir, device,
                           progress, checkpoint_dir, feature_cache)


def _train_star(processed_dir, protocol, split, embeddings_npz, backbone_dir, cfg, out_dir, device, progress,
                checkpoint_dir, feature_cache=None) -> dict:
    import torch

    from star_repro.models.losses import known_tensor, similarity, star_loss
    from star_repro.training.common import resolve_device, seed_everything
    from star_repro.training.feeder import EpochBatchSampler

    t_start = time.time()
    out_dir = Path(out_dir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir
    run = prepare_run(processed_dir, protocol, split, embeddings_npz, cfg)
    cfg = run.cfg
    dev = resolve_device(device)
    seed = int(cfg["seed"])
    seed_everything(seed)
    backbone, bconf = load_backbone(backbone_dir, split)
    check_backbone_window(bconf, cfg, Path(backbone_dir) / "config.json")
    model = build_model(run, backbone, dev)
    lcfg = loss_config(cfg)
    known = known_tensor(split.known, dev)
    opt_cfg = cfg["optimizer"]
    optimizer = PlainSGD(model.head_parameters(), lr=opt_cfg["lr"], momentum=opt_cfg["momentum"],
                         nesterov=opt_cfg["nesterov"] and opt_cfg["momentum"] > 0,
                         weight_decay=opt_cfg["weight_decay"])
    nw = int(cfg["num_workers"])
    labels = run.ds.labels
    train_feed = SkeletonFeed(run, run.train_idx, split.known_position(labels[run.train_idx]),
                              augment=cfg["augment"]["train"], seed=seed, device=dev, num_workers=nw)
    bs = int(opt_cfg["batch_size"])
    if opt_cfg["drop_last"] and len(train_feed) < bs:
        raise StarReproError(f"star.optimizer.batch_size: {bs} exceeds the {len(train_feed)} training samples "
                             "and drop_last is true, so no batch would run")
    ebs = int(cfg["eval_batch_size"])
    val_feed = test_feed = None
    if len(run.val_idx):
        val_feed = SkeletonFeed(run, run.val_idx, split.known_position(labels[run.val_idx]),
                                augment=cfg["augment"]["test"], seed=seed + TTA_SEED_OFFSET, device=dev,
                                num_workers=nw)
    if cfg["selection"] == "test":
        if not len(run.zsl_idx):
            raise StarReproError(f"selection test: protocol {protocol} has no unknown-class test samples")
        test_feed = SkeletonFeed(run, run.zsl_idx, split.unknown_position(labels[run.zsl_idx]),
                                 augment=cfg["augment"]["test"], seed=seed + TTA_SEED_OFFSET, device=dev,
                                 num_workers=nw)

    fp = _fingerprint(run, protocol, embeddings_npz, backbone_dir)
    state_path = ckpt_dir / "train_state.pt"
    start_epoch, history, best = 0, [], {"epoch": None, "score": None, "state": None}
    resumed_from = None
    if state_path.exists():
        try:
            st = torch.load(state_path, map_location=dev, weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise StarReproError(f"{state_path}: unreadable training state ({exc.__class__.__name__}); delete it "
                                 "to train from the start") from None
        if st.get("fingerprint") == fp:
            _load_training_state(model, st["model"], state_path)
            optimizer.load_state_dict(st["optimizer"])
            start_epoch, history, best = st["epoch"] + 1, st["history"], st["best"]
            resumed_from = st["epoch"]
            print(f"train: resuming after epoch {st['epoch'] + 1} from {state_path}", flush=True)
        else:
            print(f"train: {state_path} was written with other settings or inputs; starting afresh", flush=True)

    cache_note = {}
    store = feature_store(run, backbone_dir, feature_cache)
    for name, feed in (("train", train_feed), ("val", val_feed), ("test", test_feed)):
        if feed is not None and feed.cacheable(cfg["bn_mode"]) and start_epoch < opt_cfg["epochs"]:
            cache_note[name] = feed.build_cache(model, ebs, float(cfg["cache_max_mb"]), progress, name, store)
        elif feed is not None:
            cache_note[name] = False

    epochs = int(opt_cfg["epochs"])
    sampler = EpochBatchSampler(len(train_feed), bs, shuffle=True, drop_last=opt_cfg["drop_last"], seed=seed)
    t_train = 0.0
    n_seen_samples = 0
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        lr = lr_at(epoch, opt_cfg)
        optimizer.lr = lr
        model.train()
        sampler.set_epoch(epoch)
        chunks = sampler.global_batches()
        sums = {"loss": 0.0, "mpce": 0.0, "sce": 0.0, "gce": 0.0}
        correct = count = 0
        bar = _tqdm(train_feed.batches(model, chunks, epoch), progress, f"epoch {epoch + 1}/{epochs}",
                    len(chunks))
        for feat, target, _ in bar:
            part, glob = model.skeleton_embed(feat)
            names_p, parts_p = model.text_embed()
            losses = star_loss(part, glob, parts_p, names_p, target, known, lcfg)
            if not torch.isfinite(losses["loss"]):
                raise StarReproError(f"training diverged at epoch {epoch + 1}: loss is {losses['loss'].item()} "
                                     "(lower star.optimizer.lr or the init scales)")
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
            for k, v in losses.items():
                sums[k] += float(v.detach()) * len(target)
            with torch.no_grad():
                pred = similarity(glob, names_p[known], cfg["similarity"]).argmax(1)
            correct += int((pred == target).sum())
            count += len(target)
            if progress:
                bar.set_postfix(loss=f"{float(losses['loss']):.4f}")
        n_seen_samples += count
        row = {"epoch": epoch + 1, "lr": lr, **{k: (sums[k] / count if (k == "loss" or k in losses) else None)
                                                 for k in sums},
               "train_acc": 100.0 * correct / max(count, 1), "val_acc": None, "test_zsl": None}
        if val_feed is not None:
            glob_v, _ = embed_split(model, val_feed, ebs)
            sc = class_scores(model, glob_v, cfg)[:, list(split.known)]
            row["val_acc"] = float(100.0 * np.mean(sc.argmax(1) == val_feed.targets))
        if test_feed is not None:
            glob_t, _ = embed_split(model, test_feed, ebs)
            sc = class_scores(model, glob_t, cfg)[:, list(split.unknown)]
            row["test_zsl"] = float(100.0 * np.mean(sc.argmax(1) == test_feed.targets))
        t_train += time.time() - t0
        history.append(row)
        score = {"val": row["val_acc"], "test": row["test_zsl"]}.get(cfg["selection"])
        if cfg["selection"] == "last" or best["score"] is None or score >= best["score"]:
            best = {"epoch": epoch + 1, "score": score,
                    "state": {k: v.detach().cpu().clone() for k, v in _training_state(model, cfg).items()}}
        save_torch_atomic({"fingerprint": fp, "epoch": epoch, "model": _training_state(model, cfg),
                     "optimizer": optimizer.state_dict(), "history": history, "best": best}, state_path)
        write_text_atomic(out_dir / "history.tsv", _history_tsv(history))
        print(f"train: epoch {epoch + 1}/{epochs} lr {lr:g} loss {row['loss']:.4f} train acc "
              f"{row['train_acc']:.1f}%" + (f" val acc {row['val_acc']:.1f}%" if row["val_acc"] is not None else "")
              + (f" test ZSL {row['test_zsl']:.1f}%" if row["test_zsl"] is not None else ""), flush=True)

    if best["state"] is None:
        raise StarReproError(f"{state_path}: no completed epoch to select from")
    _load_training_state(model, best["state"], state_path)
    save_torch_atomic(model.state_dict(), out_dir / "model.pt")  # the full state dict, backbone included
    write_text_atomic(out_dir / "history.tsv", _history_tsv(history))
    selection = {
        "selection": {"last": "last", "val": "val", "test": "test-selected"}[cfg["selection"]],
        "selected_epoch": best["epoch"], "selection_score": best["score"],
        "score": {"last": None, "val": "known-class top-1 on validation (%)",
                  "test": "ZSL top-1 on the test set (%)"}[cfg["selection"]],
        "n_val": int(len(run.val_idx)), "val_indices_sha256": _idx_hash(run.val_idx),
        "gamma_setting": gamma_setting(cfg, run.dataset),
    }
    config = {
        "method": "star", "epochs": epochs, "seed": seed, "profile": cfg["profile"],
        "part_pooling": cfg["part_pooling"], "partition": cfg["partition"], "dataset": run.dataset,
        "protocol": protocol, "split": split.name, "unknown": list(split.unknown),
        "n_train": int(len(run.train_idx)), "fingerprint": fp, "feature_cache": cache_note,
        "backbone": {"width": bconf.get("width"), "num_class": bconf.get("num_class")}, "resolved_cfg": cfg,
    }
    timing = {"seconds_total": round(time.time() - t_start, 3), "seconds_epochs": round(t_train, 3),
              "train_samples_per_s": round(n_seen_samples / t_train, 2) if t_train > 0 else None,
              "device": str(dev), "resumed_after_epoch": resumed_from}
    write_json_atomic(out_dir / "selection.json", selection)
    write_json_atomic(out_dir / "config.json", config)
    write_json_atomic(out_dir / "timing.json", timing)
    return {**config, **selection, **timing}


def import_authors_run(weights, processed_dir, protocol: str, split, embeddings_npz, backbone_dir, cfg: Mapping,
                       out_dir) -> dict:
    """Turn a state dict saved by the authors' `ModelMatch` into a run folder that `evaluate_star` reads.

    The model is built from `cfg` (use the official-code profile: released pooling, 4 heads, m = 100, 768-d) and
    the backbone architecture of `backbone_dir`; the authors' file supplies every weight, the backbone's
    (drifted) BatchNorm statistics included. Writes model.pt, config.json and selection.json (selection
    "imported") into `out_dir`; returns the load report (loaded and ignored keys).
    """
    import torch

    from star_repro.models.star import load_authors_star_weights

    out_dir = Path(out_dir)
    run = prepare_run(processed_dir, protocol, split, embeddings_npz, cfg)
    cfg = run.cfg
    if uses_validation(cfg):
        raise StarReproError("star.selection/star.gamma: an imported run has no validation split; use a fixed γ "
                             "or 'test' and selection 'last' or 'test'")
    backbone, bconf = load_backbone(backbone_dir, split)
    model = build_model(run, backbone, torch.device("cpu"))
    report = load_authors_star_weights(model, weights)
    save_torch_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()}, out_dir / "model.pt")
    from star_repro.provenance import file_record

    source = file_record(weights) if isinstance(weights, (str, Path)) else {"in_memory": True}
    write_json_atomic(out_dir / "selection.json", {
        "selection": "imported", "selected_epoch": None, "selection_score": None, "score": None, "n_val": 0,
        "val_indices_sha256": _idx_hash(run.val_idx), "gamma_setting": gamma_setting(cfg, run.dataset)})
    write_json_atomic(out_dir / "config.json", {
        "method": "star", "imported_from": {"path": str(weights) if isinstance(weights, (str, Path)) else None,
                                            **source},
        "seed": cfg["seed"], "profile": cfg["profile"], "part_pooling": cfg["part_pooling"],
        "partition": cfg["partition"], "dataset": run.dataset, "protocol": protocol, "split": split.name,
        "unknown": list(split.unknown), "backbone": {"width": bconf.get("width")}, "resolved_cfg": cfg,
        "ignored_keys": report["ignored"]})
    return report


def _idx_hash(idx: np.ndarray) -> str:
    from star_repro.io import sha256_text

    return sha256_text(",".join(map(str, np.asarray(idx).tolist())))


# ---------------------------------------------------------------------------------------------- benchmark
BENCH_SIZES: dict[str, dict] = {
    # the paper's model: width-1 Shift-GCN (256 channels), 768-d prompts/text, m = 100, 4 heads, batch 64
    "paper": {"width": 1.0, "attn_dim": 768, "heads": 4, "m": 100, "text_hidden": 256, "text_dim": 768,
              "classes": 60, "batch": 64, "window": 64, "steps": 2},
    # the demo profile's sizes: MiniLM text (384-d), the demo backbone (width 0.125, 32-frame windows)
    "demo": {"width": 0.125, "attn_dim": 64, "heads": 4, "m": 100, "text_hidden": 64, "text_dim": 384,
             "classes": 60, "batch": 16, "window": 32, "steps": 5},
}


def bench_star(sizes=("paper", "demo"), device: str = "cpu", threads: int | None = None) -> list[dict]:
    """Training and evaluation throughput of STAR with a random-weight backbone on random skeletons.

    Per size: `train_samples_per_s` (backbone forward + head forward/backward + SGD step, i.e. the uncached
    path), `train_cached_samples_per_s` (head only, the feature-cache path), `eval_samples_per_s` (backbone +
    head, no gradient), and the process's peak resident memory. `sizes` holds names of BENCH_SIZES or dicts.
    """
    import resource

    import torch

    from star_repro.models.losses import LossConfig, known_tensor, star_loss
    from star_repro.models.shiftgcn import ShiftGCN
    from star_repro.models.star import StarModel, StarModelConfig
    from star_repro.training.common import resolve_device, set_threads

    dev = resolve_device(device)
    n_threads = set_threads(threads) if dev.type == "cpu" else None
    rows = []
    for size in sizes:
        spec = dict(BENCH_SIZES[size]) if isinstance(size, str) else dict(size)
        name = size if isinstance(size, str) else spec.get("name", "custom")
        torch.manual_seed(0)
        c, b, steps = spec["classes"], spec["batch"], spec["steps"]
        backbone = ShiftGCN(c - 5, width=spec["width"])
        mcfg = StarModelConfig(partition=6, part_pooling="released", heads=spec["heads"], m=spec["m"],
                               attn_dim=spec["attn_dim"], text_hidden=spec["text_hidden"], bn_mode="frozen",
                               w_std="fan_in")
        model = StarModel(backbone, torch.randn(c, spec["text_dim"]), torch.randn(6, c, spec["text_dim"]),
                          mcfg).to(dev)
        opt = PlainSGD(model.head_parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
        known = known_tensor(range(c - 5), dev)
        x = torch.randn(b, 3, spec["window"], 25, 2, device=dev)
        y = torch.randint(0, c - 5, (b,), device=dev)
        lcfg = LossConfig()

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def train_step(feat):
            part, glob = model.skeleton_embed(feat)
            names, parts = model.text_embed()
            loss = star_loss(part, glob, parts, names, y, known, lcfg)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()

        def timed(fn):
            fn()  # warm-up
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            sync()
            return b * steps / (time.perf_counter() - t0)

        model.train()
        train = timed(lambda: train_step(model.backbone_features(x)))
        feat = model.backbone_features(x).detach()
        cached = timed(lambda: train_step(feat))
        model.eval()

        def eval_step():
            with torch.no_grad():
                model(x)

        ev = timed(eval_step)
        rows.append({"size": name, "device": str(dev), "threads": n_threads, "batch": b,
                     "backbone_width": spec["width"], "attn_dim": spec["attn_dim"], "m": spec["m"],
                     "train_samples_per_s": round(train, 2), "train_cached_samples_per_s": round(cached, 2),
                     "eval_samples_per_s": round(ev, 2),
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
    return rows
