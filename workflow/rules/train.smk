# One rule trains every run (teacher or student, any method, classifier or generator);
# one evaluates a classifier run, one a generator run (which also draws samples.png).
# `--resume` makes a rerun of a killed job continue from its last complete epoch.
# `gpu_slots_per_device` (the gpu profile): each job takes one GPU slot (common.smk).
# Inputs are `ancient`: a path names its content (run ids are config hashes), so file
# times, which `dvc pull` or a copy between machines leave in any order, must not rerun.


rule train:
    input:
        config=run_config,
        data=ancient(f"{RESULTS}/runs/{{exp}}/data.json"),
        teacher=train_teacher,
        tuned=train_tuned,
    output:
        summary=f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json",
        best=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/best.pt",
        last=f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/last.pt",
    log:
        f"{RESULTS}/logs/{{exp}}/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{exp}}/train/{{run}}.tsv"
    priority: train_priority
    conda:
        "../envs/lit.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        args=run_args,
        run_dir=run_dir,
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
    benchmark:
        f"{RESULTS}/benchmarks/{{exp}}/evaluate/{{run}}.tsv"
    wildcard_constraints:
        exp=CLASSIFIER_EXPERIMENTS,
    conda:
        "../envs/lit.yaml"
    # accuracy, parameters and FLOPs: nothing the machine's load changes (speed: rule speed).
    # `lit train` scored the run as it ended: this writes eval.json from those scores in a
    # fraction of a second, without torch (and scores afresh a run that has none)
    threads: 1
    params:
        run_dir=run_dir,
    shell:
        "lit evaluate {params.run_dir} --threads 1 > {log} 2>&1"


# Every distinct architecture of a classifier experiment timed once, in one process, in
# interleaved rounds, while nothing else runs: the job holds every core of the workflow
# (on a cluster the profile asks for a whole node). Students of one architecture share
# one speed figure by construction. With `evaluate.onnx: true` each architecture is also
# exported to ONNX and timed in ONNX Runtime in the same rounds. Beside the timings it
# writes the file named by its settings that the tables read (`SPEED_SETTINGS`).
rule speed:
    input:
        evaluations=experiment_evaluations,
    output:
        speed=f"{RESULTS}/{{exp}}/{{exp}}-speed.json",
        settings=speed_settings_file("{exp}"),
    log:
        f"{RESULTS}/logs/{{exp}}/speed.log",
    wildcard_constraints:
        exp=CLASSIFIER_EXPERIMENTS,
    conda:
        "../envs/lit.yaml"
    threads: EXCLUSIVE_THREADS
    params:
        run_dirs=evaluated_run_dirs,
        rounds=SPEED_ROUNDS,
        latency_runs=SPEED_LATENCY_RUNS,
        onnx=ONNX_SPEED_FLAG,
        settings=SPEED_SETTINGS,
        stale_settings=lambda wildcards: speed_settings_file(wildcards.exp, "*"),
    shell:
        "(lit speed {params.run_dirs} --output {output.speed} --threads 1 --rounds {params.rounds} "
        "--latency-runs {params.latency_runs}{params.onnx} && rm -f {params.stale_settings} "
        "&& echo '{params.settings}' > {output.settings}) > {log} 2>&1"


rule evaluate_generator:
    input:
        summary=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/summary.json"),
        best=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/best.pt"),
        last=ancient(f"{RESULTS}/runs/{{exp}}/{{run}}/checkpoints/last.pt"),
    output:
        evaluation=f"{RESULTS}/runs/{{exp}}/{{run}}/eval.json",
        samples=f"{RESULTS}/runs/{{exp}}/{{run}}/samples.png",
    log:
        f"{RESULTS}/logs/{{exp}}/evaluate/{{run}}.log",
    wildcard_constraints:
        exp=GAN_EXPERIMENTS,
    conda:
        "../envs/lit.yaml"
    threads: 1
    params:
        run_dir=run_dir,
        latency_runs=config.get("evaluate", {}).get("latency_runs", 30),
    shell:
        "lit evaluate {params.run_dir} --threads 1 "
        "--latency-runs {params.latency_runs} > {log} 2>&1"
