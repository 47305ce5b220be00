"""Tables and figures from run outputs: paper values beside ours exactly as recovered, the synthetic mark."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from star_repro.config import load_params, subset
from star_repro.registry import build_stages, experiment_runs
from star_repro.reporting.figures import figure_plan, write_figures
from star_repro.reporting.tables import write_tables


def _fake_runs(params, root, rng):
    """Plausible eval outputs for every run (what `star-repro evaluate` writes), values from the rng."""
    for run, exp, seed in experiment_runs(params):
        d = root / run / "eval"
        d.mkdir(parents=True)
        s, u = rng.uniform(40, 90, 2)
        m = {"zsl_top1": float(rng.uniform(30, 90)), "gzsl_seen": float(s), "gzsl_unseen": float(u),
             "gzsl_h": float(2 * s * u / (s + u)), "gamma": 0.012, "selection": "last", "seed": seed}
        if exp["name"] != "ntu60_xview_55_5":  # a run evaluated before runs recorded their inputs
            m["inputs"] = {"descriptions": "imported-star" if exp.get("partition", 6) == 6 else "openai",
                           "encoder": "clip:ViT-L-14-336",
                           "backbone": "authors' release (x.pt)" if exp["protocol"] == "xsub" else "pretrained here"}
        (d / "metrics.json").write_text(json.dumps(m))
        n_unknown = len(params["splits"][exp["split"]]["unknown"])
        cm = rng.integers(0, 10, (n_unknown, n_unknown))
        np.save(d / "confusion_zsl.npy", cm)
        gam = np.linspace(0, 0.1, 11)
        with open(d / "gamma_sweep.tsv", "w") as fh:
            fh.write("gamma\tseen\tunseen\th\n")
            for g in gam:
                fh.write(f"{g}\t{90 - 300 * g}\t{20 + 400 * g}\t{50}\n")
        labels = np.repeat(np.array(params["splits"][exp["split"]]["unknown"]), 8)
        np.savez(d / "tsne_inputs.npz", skeleton=rng.normal(size=(len(labels), 16)), labels=labels,
                 semantic=rng.normal(size=(2 * n_unknown, 16)), semantic_labels=np.tile(np.arange(n_unknown), 2),
                 semantic_kind=np.repeat([0, 1], n_unknown))


@pytest.fixture(scope="module")
def params(project_root):
    return load_params(project_root / "params.yaml")


@pytest.fixture(scope="module")
def runs(params, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    _fake_runs(params, root, np.random.default_rng(0))
    return root


def _stage_view(params, name):
    (st,) = [s for s in build_stages(params) if s.name == name]
    return subset(params, st.params)


def test_table2_has_paper_values_beside_ours(params, runs, tmp_path):
    write_tables(_stage_view(params, "table2"), runs, tmp_path, 2)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table2.csv").read_text())))
    by = {(r["cell"], r["method"], r["metric"]): r for r in rows}
    # PAPER_NUMBERS.md, Table 2, Xsub 55/5: 81.4 and 69.0 / 69.9 / 69.4; Xsub 48/12 H 46.6; Xview 48/12 ZSL 42.5
    assert float(by[("ntu60_xsub_55_5", "star", "zsl")]["paper"]) == 81.4
    assert float(by[("ntu60_xsub_55_5", "star", "seen")]["paper"]) == 69.0
    assert float(by[("ntu60_xsub_55_5", "star", "h")]["paper"]) == 69.4
    assert float(by[("ntu60_xsub_48_12", "star", "h")]["paper"]) == 46.6
    assert float(by[("ntu60_xview_48_12", "star", "zsl")]["paper"]) == 42.5
    assert by[("ntu60_xview_55_5", "star", "h")]["paper"] == ""  # not recovered stays unknown
    seeds = params["experiments"]["ntu60_xsub_55_5"]["seeds"]
    vals = [json.loads((runs / f"ntu60_xsub_55_5_seed{s}/eval/metrics.json").read_text())["zsl_top1"]
            for s in seeds]
    ours = float(np.mean(vals))
    row = by[("ntu60_xsub_55_5", "star", "zsl")]
    assert float(row["ours"]) == pytest.approx(ours, abs=1e-4)
    assert int(row["n"]) == len(seeds)
    if len(seeds) > 1:
        assert float(row["ours_std"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-4)
    assert float(row["diff"]) == pytest.approx(ours - 81.4, abs=1e-4)
    assert {r["data"] for r in rows} == {"synthetic"}
    md = (tmp_path / "table2.md").read_text()
    assert "SYNTHETIC DATA" in md and "(81.4, " in md
    assert "## ntu60_xsub_55_5 (ZSL chance 20.0 %)" in md and "## ntu60_xsub_48_12 (ZSL chance 8.3 %)" in md


def test_table5_averages_the_three_splits(params, runs, tmp_path):
    write_tables(_stage_view(params, "table5"), runs, tmp_path, 5)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table5.csv").read_text())))
    (ntu,) = [r for r in rows if r["cell"] == "ntu60_random_splits" and r["method"] == "star" and r["metric"] == "zsl"]
    vals = [json.loads((runs / f"ntu60_xsub_55_5_split{k}_seed1/eval/metrics.json").read_text())["zsl_top1"]
            for k in (1, 2, 3)]
    assert float(ntu["ours"]) == pytest.approx(np.mean(vals), abs=1e-4)
    assert float(ntu["paper"]) == 77.5
    (pku,) = [r for r in rows if r["cell"] == "pku1_random_splits" and r["method"] == "star" and r["metric"] == "h"]
    assert float(pku["paper"]) == 67.1


def test_table7_reports_differences_to_the_full_model(params, runs, tmp_path):
    write_tables(_stage_view(params, "table7"), runs, tmp_path, 7)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table7.csv").read_text())))
    (r,) = [r for r in rows if r["cell"] == "ntu60_xsub_55_5" and r["variant"] == "no_mpce"
            and r["metric"] == "zsl_delta"]
    full = json.loads((runs / "ntu60_xsub_55_5_seed1/eval/metrics.json").read_text())["zsl_top1"]
    var = json.loads((runs / "ntu60_xsub_55_5_no_mpce_seed1/eval/metrics.json").read_text())["zsl_top1"]
    assert float(r["ours"]) == pytest.approx(var - full, abs=1e-4)  # paired on seed 1, whatever the full model has
    assert float(r["paper"]) == -3.2


def test_table7_deltas_pair_the_seeds(params, tmp_path):
    """A one-seed variant is compared with the full model's run of that seed, not with its mean over seeds; a
    variant with the full model's seeds with the mean over those."""
    import copy

    p = copy.deepcopy(params)
    exps = p["experiments"]
    exps["ntu60_xsub_55_5"]["seeds"] = [1, 2, 3]
    exps["ntu60_xsub_55_5_no_mpce"]["seeds"] = [2]
    exps["ntu60_xsub_55_5_pool_correct"]["seeds"] = [1, 2, 3]
    root = tmp_path / "runs"
    _fake_runs(p, root, np.random.default_rng(1))
    write_tables(_stage_view(p, "table7"), root, tmp_path, 7)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table7.csv").read_text())))

    def zsl(run):
        return json.loads((root / run / "eval/metrics.json").read_text())["zsl_top1"]
    full = [zsl(f"ntu60_xsub_55_5_seed{k}") for k in (1, 2, 3)]
    (d,) = [r for r in rows if r["cell"] == "ntu60_xsub_55_5" and r["variant"] == "no_mpce"
            and r["metric"] == "zsl_delta"]
    assert float(d["ours"]) == pytest.approx(zsl("ntu60_xsub_55_5_no_mpce_seed2") - full[1], abs=1e-4)
    (d,) = [r for r in rows if r["cell"] == "ntu60_xsub_55_5" and r["variant"] == "pool_correct"
            and r["metric"] == "zsl_delta"]
    var = [zsl(f"ntu60_xsub_55_5_pool_correct_seed{k}") for k in (1, 2, 3)]
    assert float(d["ours"]) == pytest.approx(np.mean(var) - np.mean(full), abs=1e-4)
    (f,) = [r for r in rows if r["cell"] == "ntu60_xsub_55_5" and r["variant"] == "full" and r["metric"] == "zsl"]
    assert float(f["ours"]) == pytest.approx(np.mean(full), abs=1e-4)
    assert float(f["ours_std"]) == pytest.approx(np.std(full, ddof=1), abs=1e-4) and f["n"] == "3"


def test_missing_run_is_a_clear_error(params, tmp_path):
    from star_repro.errors import StarReproError

    with pytest.raises(StarReproError, match="star-repro evaluate --experiment ntu60_xsub_55_5"):
        write_tables(_stage_view(params, "table2"), tmp_path, tmp_path / "out", 2)


@pytest.mark.parametrize("fname", ["fig3_gamma_ntu60_xsub_55_5.png", "fig3_m_ntu60_xsub_55_5.png",
                                   "fig4_tsne_ntu60_xsub_55_5.png", "fig5_confusion_ntu60_xsub_55_5.png"])
def test_figures_are_drawn(params, runs, tmp_path, fname):
    assert fname in [f for f, _, _ in figure_plan(params)]
    view = _stage_view(params, f"figure_{fname[:-4]}")
    (out,) = write_figures(view, runs, tmp_path, only=fname)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_every_row_names_its_descriptions_encoder_and_backbone(params, runs, tmp_path):
    for table in (2, 6):
        write_tables(_stage_view(params, f"table{table}"), runs, tmp_path, table)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table2.csv").read_text())))
    assert rows and all(r["descriptions"] and r["encoder"] and r["backbone"] for r in rows)
    by = {(r["cell"], r["method"], r["metric"]): r for r in rows}
    star = by[("ntu60_xsub_55_5", "star", "zsl")]
    assert (star["descriptions"], star["encoder"], star["backbone"]) == \
        ("imported-star", "clip:ViT-L-14-336", "authors' release (x.pt)")
    assert by[("ntu60_xview_48_12", "star", "h")]["backbone"] == "pretrained here"
    assert by[("ntu60_xview_55_5", "star", "zsl")]["backbone"] == "not recorded"
    md = (tmp_path / "table2.md").read_text()
    assert "| descriptions | encoder | backbone |" in md
    assert "| imported-star | clip:ViT-L-14-336 | authors' release (x.pt) |" in md
    assert "| not recorded | not recorded | not recorded |" in md
    t6 = {(r["variant"], r["metric"]): r for r in csv.DictReader(io.StringIO((tmp_path / "table6.csv").read_text()))
          if r["cell"] == "ntu60_xsub_55_5"}
    assert t6[("4part", "zsl")]["descriptions"] == "openai" and t6[("6part", "zsl")]["descriptions"] == "imported-star"


def test_run_inputs_reads_the_embedding_and_backbone_records(tmp_path):
    from star_repro.errors import InputFormatError
    from star_repro.provenance import run_inputs

    npz, bb = tmp_path / "e.npz", tmp_path / "bb"
    bb.mkdir()
    npz.with_suffix(".json").write_text(json.dumps({
        "descriptions": {"file": "data/descriptions/ntu60_6part.json",
                         "cache": {"file": "prompts/cache/imported-star/ntu120_6part.json", "sha256": "0" * 64}},
        "encoder": {"name": "clip:ViT-L-14-336"}}))
    (bb / "config.json").write_text(json.dumps({"source": "authors", "release": {"file": "n.pt"}}))
    got = run_inputs(npz, bb)
    assert (got["descriptions"], got["encoder"], got["backbone"]) == \
        ("imported-star", "clip:ViT-L-14-336", "authors' release (n.pt)")
    (bb / "config.json").write_text(json.dumps({"width": 1.0, "num_class": 55}))
    assert run_inputs(npz, bb)["backbone"] == "pretrained here"
    (bb / "config.json").write_text("{broken")
    with pytest.raises(InputFormatError, match="config.json:1: not valid JSON"):
        run_inputs(npz, bb)


def test_tables_show_intervals_single_run_and_pooled_over_seeds(params, tmp_path):
    """A one-seed cell shows its run's interval; a multi-seed cell mean ± sd and the interval of the pooled
    test samples (counts added); the control row is labelled as such."""
    import copy

    from star_repro import metrics as M

    p = copy.deepcopy(params)
    p["experiments"]["ntu60_xsub_55_5"]["seeds"] = [1, 2]
    root = tmp_path / "runs"
    _fake_runs(p, root, np.random.default_rng(2))
    counts = {1: {"zsl": [150, 250], "seen": [300, 400], "unseen": [120, 250]},
              2: {"zsl": [170, 250], "seen": [280, 400], "unseen": [100, 250]}}
    for run in ("ntu60_xsub_55_5_seed1", "ntu60_xsub_55_5_seed2", "ntu60_xview_55_5_seed1"):
        path = root / run / "eval" / "metrics.json"
        m = json.loads(path.read_text())
        m["ci95"] = M.interval_record(counts[2 if run.endswith("seed2") else 1])
        path.write_text(json.dumps(m))
    write_tables(_stage_view(p, "table2"), root, tmp_path, 2)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table2.csv").read_text())))
    by = {(r["cell"], r["method"], r["metric"]): r for r in rows}
    single = by[("ntu60_xview_55_5", "star", "zsl")]
    assert (float(single["ci95_lo"]), float(single["ci95_hi"])) == pytest.approx(M.wilson_interval(150, 250),
                                                                                abs=1e-4)
    assert single["ci95_n"] == "250"
    pooled = by[("ntu60_xsub_55_5", "star", "unseen")]
    assert (float(pooled["ci95_lo"]), float(pooled["ci95_hi"])) == pytest.approx(M.wilson_interval(220, 500),
                                                                                abs=1e-4)
    h = by[("ntu60_xsub_55_5", "star", "h")]
    assert h["ci95_n"] == "1300" and float(h["ci95_lo"]) < float(h["ci95_hi"])
    assert by[("ntu60_xsub_48_12", "star", "zsl")]["ci95_lo"] == ""  # a run without ci95 shows none
    md = (tmp_path / "table2.md").read_text()
    lo, hi = M.wilson_interval(150, 250)
    assert f"[{lo:.1f}, {hi:.1f}]" in md and "[pooled " in md
    write_tables(_stage_view(p, "table7"), root, tmp_path, 7)
    assert "CONTROL: unknown-class text deranged" in (tmp_path / "table7.md").read_text()
