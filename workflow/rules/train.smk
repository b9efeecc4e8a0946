# One rule trains every run (teacher or student, any method); one evaluates it.
# `--resume` makes a rerun of a killed job continue from its last complete epoch.
# Inputs are `ancient`: a path names its content (run ids are config hashes), so file
# times, which `dvc pull` or a copy between machines leave in any order, must not rerun.


rule train:
    input:
        config=lambda w: ancient(run_of(w).base),
        data=ancient(f"{RESULTS}/runs/{{exp}}/data.json"),
        teacher=lambda w: (
            [
                ancient(
                    f"{RUNS[(w.exp, run_of(w).teacher)].run_dir}/checkpoints/best.pt"
                )
            ]
            if run_of(w).teacher
            else []
        ),
        tuned=lambda w: [ancient(run_of(w).tuned)] if run_of(w).tuned else [],
    output:
        summary=f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json",
        best=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/best.pt",
        last=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/last.pt",
    log:
        f"{RESULTS}/logs/{{exp}}/train/{{run}}.log",
    wildcard_constraints:
        run="(?!gan-)[^/]+",
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
        "--run-dir {params.run_dir} --resume >> {log} 2>&1"


rule evaluate:
    input:
        summary=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json"),
        best=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/best.pt"),
        last=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/last.pt"),
    output:
        f"{RESULTS}/runs/{{exp}}/{{run}}/eval.json",
    log:
        f"{RESULTS}/logs/{{exp}}/evaluate/{{run}}.log",
    wildcard_constraints:
        run="(?!gan-)[^/]+",
    conda:
        "../envs/lit.yaml"
    # timings use one thread; beside one-thread training jobs on other cores they are fair
    threads: 1
    params:
        run_dir=lambda w: run_of(w).run_dir,
        latency_runs=config.get("evaluate", {}).get("latency_runs", 30),
    shell:
        "lit evaluate {params.run_dir} --threads 1 "
        "--latency-runs {params.latency_runs} > {log} 2>&1"
