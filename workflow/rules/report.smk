# Tables, figures and the merged table, each made straight from the runs' eval.json.
# These jobs take seconds: on a cluster they run where snakemake runs (local rules).
# Their inputs are `ancient`: file times (after `dvc pull` or a git checkout) say nothing,
# since run directories are named by content. A new or removed run changes the set of
# inputs, which reruns the table; a rerun evaluation has no eval.json yet, so it
# propagates. (Snakemake does not propagate a rerun across an ancient input that exists,
# which is why no rule here reads another rule's table, and why the speed stage's settings
# name a file the tables read: `SPEED_SETTINGS` in common.smk.)


rule report_experiment:
    input:
        evaluations=experiment_evaluations,
        speed=ancient(f"{RESULTS}/{{exp}}/{{exp}}-speed.json"),
        speed_settings=ancient(speed_settings_file("{exp}")),
        published=[ancient(p) for p in PUBLISHED],
    output:
        table=f"{RESULTS}/{{exp}}/table.csv",
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
        curves=report(
            f"{RESULTS}/{{exp}}/{{exp}}-learning-curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            labels={"experiment": "{exp}", "figure": "learning curves"},
        ),
    log:
        f"{RESULTS}/logs/{{exp}}/report.log",
    wildcard_constraints:
        exp=CLASSIFIER_EXPERIMENTS,
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        run_dirs=evaluated_run_dirs,
        out_dir=report_dir,
        tolerance=config.get("report", {}).get("tolerance", 0.01),
        published=PUBLISHED_FLAG,
        published_digest=PUBLISHED_DIGEST,
    shell:
        "(lit aggregate {params.run_dirs} --experiment {wildcards.exp} --output {output.table} --speed {input.speed} "
        "&& lit report {output.table} --output-dir {params.out_dir} --tolerance {params.tolerance} {params.published}) "
        "> {log} 2>&1"


# StarGAN experiments: FID by depth, and the teacher's and the shallowest student's
# translations side by side.
rule report_gan_experiment:
    input:
        evaluations=experiment_evaluations,
        published=[ancient(p) for p in PUBLISHED],
        teacher_samples=teacher_samples,
        student_samples=student_samples,
    output:
        table=f"{RESULTS}/{{exp}}/table.csv",
        figure=report(
            f"{RESULTS}/{{exp}}/{{exp}}-depth-vs-fid.png",
            caption="../report/depth_vs_fid.rst",
            category="Figures",
            labels={"experiment": "{exp}", "figure": "residual blocks vs FID"},
        ),
        figure_pdf=f"{RESULTS}/{{exp}}/{{exp}}-depth-vs-fid.pdf",
        fid=report(
            f"{RESULTS}/{{exp}}/{{exp}}-fid.csv",
            caption="../report/fid.rst",
            category="Tables",
            labels={"experiment": "{exp}", "table": "FID"},
        ),
        fid_md=f"{RESULTS}/{{exp}}/{{exp}}-fid.md",
        curves=report(
            f"{RESULTS}/{{exp}}/{{exp}}-learning-curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            labels={"experiment": "{exp}", "figure": "learning curves"},
        ),
        teacher_samples=report(
            f"{RESULTS}/{{exp}}/{{exp}}-samples-teacher.png",
            caption="../report/samples.rst",
            category="Figures",
            labels={"experiment": "{exp}", "figure": "teacher translations"},
        ),
        student_samples=report(
            f"{RESULTS}/{{exp}}/{{exp}}-samples-student.png",
            caption="../report/samples.rst",
            category="Figures",
            labels={"experiment": "{exp}", "figure": "student translations"},
        ),
    log:
        f"{RESULTS}/logs/{{exp}}/report.log",
    wildcard_constraints:
        exp=GAN_EXPERIMENTS,
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        run_dirs=evaluated_run_dirs,
        out_dir=report_dir,
        published=PUBLISHED_FLAG,
        published_digest=PUBLISHED_DIGEST,
    shell:
        "(lit aggregate {params.run_dirs} --experiment {wildcards.exp} --output {output.table} "
        "&& lit report {output.table} --output-dir {params.out_dir} {params.published} "
        "&& cp {input.teacher_samples} {output.teacher_samples} "
        "&& cp {input.student_samples} {output.student_samples}) > {log} 2>&1"


rule aggregate_all:
    input:
        evaluations=all_evaluations,
        speed=all_speed_files,
        speed_settings=all_speed_settings_files,
    output:
        table=report(
            f"{RESULTS}/table.csv", caption="../report/table.rst", category="Tables"
        ),
        metrics=f"{RESULTS}/metrics.json",
        curves=f"{RESULTS}/curves.csv",
    log:
        f"{RESULTS}/logs/aggregate_all.log",
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        run_dirs=evaluated_run_dirs,
        speed=speed_flags,
    shell:
        "lit aggregate {params.run_dirs} --output {output.table} {params.speed} --metrics {output.metrics} "
        "--curves {output.curves} > {log} 2>&1"
