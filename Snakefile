# Thin Snakefile: the rules come from the stage registry (src/star_repro/registry.py), the same one that renders
# dvc.yaml. Run e.g. `snakemake --cores 8 results/table2.csv` or `snakemake --workflow-profile
# workflow/profiles/slurm results/table2.csv`.
configfile: "params.yaml"
report: "workflow/report/workflow.rst"

include: "workflow/rules/registry.smk"


# The default target: every table and figure. (It must live here: Snakemake takes the default target from the main
# Snakefile, not from an included one.)
localrules: all


rule all:
    input: [out for stage in STAGES if stage.kind in ("tables", "figures") for out in stage.outs]
