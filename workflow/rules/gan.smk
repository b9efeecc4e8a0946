# StarGAN experiments: a teacher GAN, LIT-distilled student generators, FID evaluation.
# Run ids start with "gan-"; the classifier rules never match them.


rule train_gan:
    input:
        config=lambda w: ancient(run_of(w).base),
        data=ancient(f"{RESULTS}/runs/{{exp}}/data.json"),
    output:
        summary=f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json",
        generator=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/generator.pt",
    log:
        f"{RESULTS}/logs/{{exp}}/train/{{run}}.log",
    wildcard_constraints:
        run="gan-teacher-[^/]+",
    conda:
        "../envs/lit.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        args=lambda w: run_of(w).args,
        run_dir=lambda w: run_of(w).run_dir,
    shell:
        "OMP_NUM_THREADS={threads} lit train-gan {input.config} {params.args} "
        "--run-dir {params.run_dir} --resume >> {log} 2>&1"


rule distill_gan:
    input:
        config=lambda w: ancient(run_of(w).base),
        data=ancient(f"{RESULTS}/runs/{{exp}}/data.json"),
        teacher=lambda w: ancient(
            f"{RUNS[(w.exp, run_of(w).teacher)].run_dir}/checkpoints/generator.pt"
        ),
    output:
        summary=f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json",
        generator=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/generator.pt",
    log:
        f"{RESULTS}/logs/{{exp}}/train/{{run}}.log",
    wildcard_constraints:
        run="gan-lit-[^/]+",
    conda:
        "../envs/lit.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        args=lambda w: run_of(w).args,
        run_dir=lambda w: run_of(w).run_dir,
        teacher_dir=lambda w: RUNS[(w.exp, run_of(w).teacher)].run_dir,
        depth=lambda w: run_of(w).depth,
    shell:
        "OMP_NUM_THREADS={threads} lit distill-gan {input.config} {params.args} "
        "--teacher {params.teacher_dir} --depth {params.depth} "
        "--run-dir {params.run_dir} --resume >> {log} 2>&1"


rule evaluate_gan:
    input:
        summary=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json"),
        generator=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/generator.pt"),
    output:
        evaluation=f"{RESULTS}/runs/{{exp}}/{{run}}/eval.json",
        samples=f"{RESULTS}/runs/{{exp}}/{{run}}/samples.png",
    log:
        f"{RESULTS}/logs/{{exp}}/evaluate/{{run}}.log",
    wildcard_constraints:
        run="gan-[^/]+",
    conda:
        "../envs/lit.yaml"
    threads: 1
    params:
        run_dir=lambda w: run_of(w).run_dir,
        latency_runs=config.get("evaluate", {}).get("latency_runs", 30),
    shell:
        "lit evaluate-gan {params.run_dir} --threads 1 "
        "--latency-runs {params.latency_runs} > {log} 2>&1"


rule report_gan_experiment:
    input:
        evaluations=lambda w: [ancient(path) for path in experiment_evals(w.exp)],
        teacher_samples=lambda w: ancient(
            f"{RUNS[(w.exp, teacher_run_id(w.exp))].run_dir}/samples.png"
        ),
        student_samples=lambda w: ancient(
            f"{shallowest_student(w.exp).run_dir}/samples.png"
        ),
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
        exp="|".join(e for e in config["experiments"] if experiment_kind(e) == "gan")
        or "^$",
    localrule: True
    conda:
        "../envs/lit.yaml"
    params:
        run_dirs=lambda w, input: " ".join(
            str(Path(e).parent) for e in input.evaluations
        ),
        out_dir=lambda w: f"{RESULTS}/{w.exp}",
    shell:
        "(lit aggregate {params.run_dirs} --experiment {wildcards.exp} --output {output.table} "
        "&& lit report {output.table} --output-dir {params.out_dir} "
        "&& cp {input.teacher_samples} {output.teacher_samples} "
        "&& cp {input.student_samples} {output.student_samples}) > {log} 2>&1"
