# One rule trains every run (teacher or student, any method); one evaluates it.
# `--resume` makes a rerun of a killed job continue from its last complete epoch.


rule train:
    input:
        config=lambda w: run_of(w).base,
        data=f"{RESULTS}/{{exp}}/data.json",
        teacher=lambda w: (
            [f"{RUNS[(w.exp, run_of(w).teacher)].run_dir}/checkpoints/best.pt"] if run_of(w).teacher else []
        ),
    output:
        summary=f"{RESULTS}/{{exp}}/runs/{{run}}/summary.json",
        best=f"{RESULTS}/{{exp}}/runs/{{run}}/checkpoints/best.pt",
        last=f"{RESULTS}/{{exp}}/runs/{{run}}/checkpoints/last.pt",
    params:
        args=lambda w: run_of(w).args,
        run_dir=lambda w: run_of(w).run_dir,
    log:
        f"{RESULTS}/{{exp}}/logs/train/{{run}}.log",
    threads: 1
    resources:
        gpu=0,
    shell:
        "OMP_NUM_THREADS={threads} {LIT} train {input.config} {params.args} "
        "--run-dir {params.run_dir} --resume > {log} 2>&1"


rule evaluate:
    input:
        summary=f"{RESULTS}/{{exp}}/runs/{{run}}/summary.json",
        best=f"{RESULTS}/{{exp}}/runs/{{run}}/checkpoints/best.pt",
        last=f"{RESULTS}/{{exp}}/runs/{{run}}/checkpoints/last.pt",
    output:
        f"{RESULTS}/{{exp}}/runs/{{run}}/eval.json",
    params:
        run_dir=lambda w: run_of(w).run_dir,
        latency_runs=config.get("evaluate", {}).get("latency_runs", 30),
    log:
        f"{RESULTS}/{{exp}}/logs/evaluate/{{run}}.log",
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} {LIT} evaluate {params.run_dir} "
        "--latency-runs {params.latency_runs} > {log} 2>&1"
