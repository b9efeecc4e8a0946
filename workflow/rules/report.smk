# Gather every run into one tidy table, then draw the figures and write the tables.
# These jobs take seconds: on a cluster they run where snakemake runs (local rules).
# Their inputs are `ancient` (file times after `dvc pull` or a git checkout say nothing);
# the `runs` parameter lists the runs behind a table, so a new or removed run reruns
# every table and figure downstream of it (a params trigger).


rule aggregate_experiment:
    input:
        lambda w: [ancient(path) for path in experiment_evals(w.exp)],
    output:
        f"{RESULTS}/{{exp}}/table.csv",
    log:
        f"{RESULTS}/logs/{{exp}}/aggregate.log",
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        run_dirs=lambda w, input: " ".join(str(Path(e).parent) for e in input),
    shell:
        "lit aggregate {params.run_dirs} --experiment {wildcards.exp} --output {output} > {log} 2>&1"


rule report_experiment:
    input:
        ancient(f"{RESULTS}/{{exp}}/table.csv"),
    output:
        figure=report(
            f"{RESULTS}/{{exp}}/{{exp}}-depth-vs-accuracy.png",
            caption="../report/depth_vs_accuracy.rst",
            category="Figures",
            labels={"experiment": "{exp}", "figure": "depth vs accuracy"},
        ),
        figure_pdf=f"{RESULTS}/{{exp}}/{{exp}}-depth-vs-accuracy.pdf",
        summary=report(
            f"{RESULTS}/{{exp}}/{{exp}}-summary.csv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"experiment": "{exp}", "table": "every configuration"},
        ),
        summary_md=f"{RESULTS}/{{exp}}/{{exp}}-summary.md",
        compression=report(
            f"{RESULTS}/{{exp}}/{{exp}}-compression.csv",
            caption="../report/compression.rst",
            category="Tables",
            labels={"experiment": "{exp}", "table": "compression"},
        ),
        compression_md=f"{RESULTS}/{{exp}}/{{exp}}-compression.md",
    log:
        f"{RESULTS}/logs/{{exp}}/report.log",
    wildcard_constraints:
        exp="|".join(
            e for e in config["experiments"] if experiment_kind(e) == "classifier"
        )
        or "^$",
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        out_dir=lambda w: f"{RESULTS}/{w.exp}",
        tolerance=config.get("report", {}).get("tolerance", 0.01),
        runs=lambda w: experiment_run_ids(w.exp),
    shell:
        "lit report {input} --output-dir {params.out_dir} --tolerance {params.tolerance} > {log} 2>&1"


rule aggregate_all:
    input:
        [ancient(f"{RESULTS}/{exp}/table.csv") for exp in config["experiments"]],
    output:
        table=report(
            f"{RESULTS}/table.csv", caption="../report/table.rst", category="Tables"
        ),
        metrics=f"{RESULTS}/metrics.json",
    log:
        f"{RESULTS}/logs/aggregate_all.log",
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        runs=sorted(run_id for _, run_id in RUNS),
    shell:
        "lit merge-tables {input} --output {output.table} --metrics {output.metrics} > {log} 2>&1"
