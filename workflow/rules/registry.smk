import json
import os
import sys

from star_repro.config import load_yaml_file, subset, validate
from star_repro.registry import build_stages

for _cf in workflow.configfiles:  # duplicate keys: Snakemake's loader would keep the last value silently
    load_yaml_file(_cf)
validate(config, "params.yaml (snakemake config)")
# Stage commands call `star-repro` from the environment Snakemake itself runs in.
shell.prefix(f"export PATH={os.path.dirname(sys.executable)}:$PATH; ")
STAGES = build_stages(config)
# Light stages run on the submitting machine when a cluster executor is used.


def _out(path, stage):
    # Folders are declared as directory() outputs; files as plain outputs. Tables (CSV) and figures go into
    # `snakemake --report` (captions in workflow/report/, relative to this file).
    ext = os.path.splitext(path)[1]
    if not ext:
        return directory(path)
    if stage.kind == "tables" and ext == ".csv":
        return report(path, caption="../report/table.rst", category="Tables")
    if stage.kind == "figures" and ext == ".png":
        return report(path, caption="../report/figure.rst", category="Figures")
    return path


for _st in STAGES:
    rule:
        name: _st.name
        input: _st.deps
        output: [_out(o, _st) for o in _st.snakemake_outputs()]
        params:
            # the exact params.yaml keys this stage reads; a change to them reruns it
            values=json.dumps(subset(config, _st.params), sort_keys=True),
            # the command is bound here, at definition time: a shell expression naming the loop variable would be
            # re-evaluated when the job runs and give every rule the last stage's command
            cmd=_st.cmd,
        threads: _st.resources["threads"]
        resources:
            mem_mb=_st.resources["mem_mb"],
            runtime=_st.resources["runtime"],
            gpu=_st.resources["gpu"],
        benchmark: f"benchmarks/{_st.name}.tsv"
        log: f"logs/{_st.name}.log"
        localrule: _st.local
        shell: "OMP_NUM_THREADS={threads} {params.cmd} 2> >(tee {log} >&2)"
