# One rule trains every run (teacher or student, any method); one evaluates it.
# `--resume` makes a rerun of a killed job continue from its last complete epoch.


rule train:
    input:
        config=lambda w: run_of(w).base,
        data=f"{RESULTS}/runs/{{exp}}/data.json",
        teacher=lambda w: (
            [f"{RUNS[(w.exp, run_of(w).teacher)].run_dir}/checkpoints/best.pt"]
            if run_of(w).teacher
            else []
        ),
    output:
        summary=f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json",
        best=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/best.pt",
        last=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/last.pt",
    log:
        f"{RESULTS}/logs/{{exp}}/train/{{run}}.log",
    conda:
        "../envs/lit.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        args=lambda w: run_of(w).args,
        run_dir=lambda w: run_of(w).run_dir,
    shell:
        "OMP_NUM_THREADS={threads} lit train {input.config} {params.args} "
        "--run-dir {params.run_dir} --resume > {log} 2>&1"


rule evaluate:
    input:
        summary=f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json",
        best=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/best.pt",
        last=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/last.pt",
    output:
        f"{RESULTS}/runs/{{exp}}/{{run}}/eval.json",
    log:
        f"{RESULTS}/logs/{{exp}}/evaluate/{{run}}.log",
    conda:
        "../envs/lit.yaml"
    # all the cores, so no other job runs beside the latency timing; it times one thread
    threads: workflow.cores
    params:
        run_dir=lambda w: run_of(w).run_dir,
        latency_runs=config.get("evaluate", {}).get("latency_runs", 30),
    shell:
        "OMP_NUM_THREADS=1 lit evaluate {params.run_dir} "
        "--latency-runs {params.latency_runs} > {log} 2>&1"
