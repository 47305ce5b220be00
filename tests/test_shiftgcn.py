"""Shift-GCN against STAR_SPEC §5: state-dict keys and shapes, spatial shift, outputs, checkpoint loading."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from star_repro.errors import StarReproError
from star_repro.models.shiftgcn import (
    ShiftGCN,
    SpatialShift,
    count_parameters,
    load_authors_checkpoint,
    spatial_shift_in_index,
    spatial_shift_out_index,
)


# one intra-op thread for the whole module (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec_state_shapes(num_class: int, w: float = 1.0) -> dict[str, tuple]:
    """STAR_SPEC §5.1-5.5 written out by hand: units (in, out, stride, residual) and their tensors."""
    ch = lambda c: max(1, round(c * w))  # noqa: E731
    units = [(3, ch(64), "none"), (ch(64), ch(64), "id"), (ch(64), ch(64), "id"), (ch(64), ch(64), "id"),
             (ch(64), ch(128), "conv"), (ch(128), ch(128), "id"), (ch(128), ch(128), "id"),
             (ch(128), ch(256), "conv"), (ch(256), ch(256), "id"), (ch(256), ch(256), "id")]
    shapes: dict[str, tuple] = {}

    def bn(p, c):
        shapes.update({f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,),
                       f"{p}.running_var": (c,), f"{p}.num_batches_tracked": ()})

    bn("data_bn", 2 * 25 * 3)
    for k, (cin, cout, res) in enumerate(units, 1):
        g = f"l{k}.gcn1"
        shapes.update({f"{g}.Linear_weight": (cin, cout), f"{g}.Linear_bias": (1, 1, cout),
                       f"{g}.Feature_Mask": (1, 25, cin), f"{g}.shift_in": (25 * cin,),
                       f"{g}.shift_out": (25 * cout,)})
        bn(f"{g}.bn", 25 * cout)
        if cin != cout:
            shapes.update({f"{g}.down.0.weight": (cout, cin, 1, 1), f"{g}.down.0.bias": (cout,)})
            bn(f"{g}.down.1", cout)
        t = f"l{k}.tcn1"
        bn(f"{t}.bn", cout)
        bn(f"{t}.bn2", cout)
        shapes.update({f"{t}.shift_in.xpos": (cout,), f"{t}.shift_in.ypos": (cout,),
                       f"{t}.shift_out.xpos": (cout,), f"{t}.shift_out.ypos": (cout,),
                       f"{t}.temporal_linear.weight": (cout, cout, 1, 1), f"{t}.temporal_linear.bias": (cout,)})
        if res == "conv":
            shapes.update({f"l{k}.residual.conv.weight": (cout, cin, 1, 1), f"l{k}.residual.conv.bias": (cout,)})
            bn(f"l{k}.residual.bn", cout)
    shapes.update({"fc.weight": (num_class, ch(256)), "fc.bias": (num_class,)})
    return shapes


def _not_param(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked", "gcn1.shift_in", "gcn1.shift_out"))


@pytest.mark.parametrize("num_class,width", [(60, 1.0), (55, 0.25)])
def test_state_dict_keys_shapes_and_parameter_count_follow_the_spec(num_class, width):
    model = ShiftGCN(num_class, width=width)
    spec = spec_state_shapes(num_class, width)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(spec), (sorted(set(got) - set(spec)), sorted(set(spec) - set(got)))
    assert got == spec
    assert count_parameters(model) == sum(math.prod(s) for k, s in spec.items() if not _not_param(k))
    assert model.out_channels == (256 if width == 1.0 else 64)
    if width == 1.0:
        assert count_parameters(model) == 693_107  # 0.69 M, the Shift-GCN size
    for k, v in model.state_dict().items():
        if k.endswith((".shift_in", ".shift_out")) and "gcn1" in k:
            assert v.dtype == torch.int64


@pytest.mark.parametrize("channels", [3, 8, 64])
def test_spatial_shift_indices_equal_the_formulas(channels):
    shift_in = spatial_shift_in_index(channels).tolist()
    shift_out = spatial_shift_out_index(channels).tolist()
    for v in range(25):
        for c in range(channels):
            assert shift_in[v * channels + c] == (v * channels + c + c * channels) % (channels * 25)
            assert shift_out[v * channels + c] == (v * channels + c - c * channels) % (channels * 25)
            # Reading joint (v + c) mod 25 / (v − c) mod 25 of the same channel.
            assert divmod(shift_in[v * channels + c], channels) == ((v + c) % 25, c)
            assert divmod(shift_out[v * channels + c], channels) == ((v - c) % 25, c)


def test_spatial_block_matches_a_direct_transcription():
    torch.manual_seed(0)
    cin, cout, n, t = 3, 4, 2, 5
    block = SpatialShift(cin, cout)
    with torch.no_grad():
        block.Feature_Mask.normal_()
        block.Linear_bias.normal_()
    x0 = torch.randn(n, cin, t, 25, dtype=torch.float64)
    block.double().train()
    got = block(x0)

    w, b = block.Linear_weight.detach().numpy(), block.Linear_bias.detach().numpy()[0, 0]
    mask = np.tanh(block.Feature_Mask.detach().numpy()[0]) + 1  # (25, cin)
    x = x0.numpy()
    lin = np.zeros((n, t, 25, cout))
    for i in range(n):
        for tt in range(t):
            shifted = np.array([[x[i, c, tt, (v + c) % 25] for c in range(cin)] for v in range(25)])
            lin[i, tt] = (shifted * mask) @ w + b
    out = np.zeros_like(lin)
    for v in range(25):
        for d in range(cout):
            out[:, :, v, d] = lin[:, :, (v - d) % 25, d]
    flat = out.reshape(n * t, 25 * cout)
    flat = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)  # BN per (joint, channel), batch statistics
    y = flat.reshape(n, t, 25, cout).transpose(0, 3, 1, 2)
    d = block.down
    down = torch.nn.functional.conv2d(x0, d[0].weight, d[0].bias).detach().numpy()
    down = (down - down.mean((0, 2, 3), keepdims=True)) / np.sqrt(down.var((0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(got.detach().numpy(), np.maximum(y + down, 0), rtol=1e-9, atol=1e-9)
    # Gradients through the permutation gathers equal those of a plain index_select.
    x1 = x0.clone().requires_grad_(True)
    block(x1).pow(2).sum().backward()
    x2 = x0.clone().requires_grad_(True)
    ref = x2.permute(0, 2, 3, 1).reshape(n * t, 25 * cin).index_select(1, block.shift_in)
    ref.pow(2).sum().backward()
    assert x1.grad is not None and x1.grad.abs().sum() > 0


def test_outputs_shapes_and_person_row_order():
    torch.manual_seed(1)
    model = ShiftGCN(7, width=0.125).eval()
    assert model.out_channels == 32
    x = torch.randn(3, 3, 16, 25, 2)
    y, pooled = model.extract(x)
    assert y.shape == (6, 32, 4, 25) and pooled.shape == (3, 32)
    torch.testing.assert_close(pooled, y.view(3, 2, 32, -1).mean(3).mean(1))
    torch.testing.assert_close(model(x), model.fc(pooled))
    # Rows are (n, m): changing person 1 of sample 2 changes row 2·2 + 1 only (eval-mode BN is per sample).
    x2 = x.clone()
    x2[2, :, :, :, 1] += 1.0
    y2, _ = model.extract(x2)
    changed = [(y2[r] - y[r]).abs().max().item() > 1e-6 for r in range(6)]
    assert changed == [False, False, False, False, False, True]
    with pytest.raises(ValueError, match="expects"):
        model.extract(torch.randn(2, 3, 16, 24, 2))


def _authors_style_state(num_class: int, width: float = 0.125, seed: int = 5) -> dict:
    torch.manual_seed(seed)
    src = ShiftGCN(num_class, width=width)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return {f"module.{k}": v.clone() for k, v in src.state_dict().items()}  # saved from DataParallel


def test_load_authors_checkpoint_strips_module_and_drops_other_fc(tmp_path):
    state = _authors_style_state(60)
    path = tmp_path / "ntu60_ShiftGCN_joint_xsub_seen55_unseen5-81-94136.pt"
    torch.save(state, path)
    model = ShiftGCN(55, width=0.125)
    fc_before = model.fc.weight.detach().clone()
    report = load_authors_checkpoint(model, path)
    assert report == {"missing": [], "unexpected": [], "dropped": ["module.fc.weight"[7:], "fc.bias"]}
    for k, v in model.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, state[f"module.{k}"]), k
    assert torch.equal(model.fc.weight, fc_before)
    # Same class count: fc loads too.
    model60 = ShiftGCN(60, width=0.125)
    assert load_authors_checkpoint(model60, state)["dropped"] == []
    assert torch.equal(model60.fc.weight, state["module.fc.weight"])


def test_load_authors_checkpoint_refuses_mismatches(tmp_path):
    state = _authors_style_state(60)
    with pytest.raises(StarReproError, match="l1.gcn1.Linear_weight"):
        load_authors_checkpoint(ShiftGCN(60, width=0.25), state)  # another width
    partial = {k: v for k, v in state.items() if "l10." not in k}
    with pytest.raises(StarReproError, match="missing keys"):
        load_authors_checkpoint(ShiftGCN(60, width=0.125), partial)
    report = load_authors_checkpoint(ShiftGCN(60, width=0.125), partial, strict_except_fc=False)
    assert report["missing"] and all(k.startswith("l10.") for k in report["missing"])
    bad = dict(state)
    bad["module.l2.gcn1.shift_in"] = bad["module.l2.gcn1.shift_in"].flip(0)
    with pytest.raises(StarReproError, match="spatial shift indices"):
        load_authors_checkpoint(ShiftGCN(60, width=0.125), bad)


class _NotATensor:
    pass


def test_checkpoint_is_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": _NotATensor()}, path)
    with pytest.raises(StarReproError, match="weights-only"):
        load_authors_checkpoint(ShiftGCN(60, width=0.125), path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(StarReproError, match="junk.pt"):
        load_authors_checkpoint(ShiftGCN(60, width=0.125), tmp_path / "junk.pt")
    with pytest.raises(StarReproError, match="not found"):
        load_authors_checkpoint(ShiftGCN(60, width=0.125), tmp_path / "absent.pt")


def test_star_checkpoint_backbone_prefix_is_taken():
    state = {f"pretraining_model.{k[7:]}": v for k, v in _authors_style_state(60).items()}
    state["body_part_prompts.0"] = torch.zeros(100, 768)
    model = ShiftGCN(60, width=0.125)
    assert load_authors_checkpoint(model, state) == {"missing": [], "unexpected": [], "dropped": []}


def test_initialisation_follows_the_authors():
    torch.manual_seed(0)
    model = ShiftGCN(55)
    assert torch.all(model.l2.gcn1.Feature_Mask == 0) and torch.all(model.l2.gcn1.Linear_bias == 0)
    assert abs(model.l9.gcn1.Linear_weight.std().item() - math.sqrt(1 / 256)) < 0.005
    assert abs(model.fc.weight.std().item() - math.sqrt(2 / 55)) < 0.02
    assert torch.all(model.l5.residual.conv.bias == 0) and torch.all(model.l1.gcn1.down[0].bias == 0)
    assert model.l3.tcn1.temporal_linear.bias.abs().max() > 0  # PyTorch's default bias init is kept
    assert model.l3.tcn1.shift_in.ypos.abs().max() <= 1 and model.l3.tcn1.shift_in.xpos.abs().max() <= 1e-8


def test_benchmark_reports_throughput_and_memory():
    from star_repro.models.shiftgcn import bench_shiftgcn

    rows = bench_shiftgcn(widths=(0.125,), batch=2, frames=16, steps=1, isolate=False)
    assert rows[0]["channels"] == 32 and rows[0]["train_samples_per_s"] > 0
    assert rows[0]["infer_samples_per_s"] > 0 and rows[0]["peak_rss_mib"] > 0
