# The paper's validation tuning, before the final sweep: tau (KD), then alpha with tau
# fixed, then beta (LIT) with both fixed, each chosen on the validation split with a small
# student and a short schedule. The final KD, LIT and FitNets runs read the chosen values
# from tuned.json (`method.tuned`), and their config.yaml and the tables show them.


rule tune:
    input:
        config=tune_config,
        data=ancient(f"{RESULTS}/runs/{{exp}}/data.json"),
        teacher=tune_teacher,
    output:
        tuned=f"{RESULTS}/runs/{{exp}}/{{tuning}}/tuned.json",
        trials=f"{RESULTS}/runs/{{exp}}/{{tuning}}/tuning.csv",
        figure=f"{RESULTS}/runs/{{exp}}/{{tuning}}/tuning.png",
    log:
        f"{RESULTS}/logs/{{exp}}/{{tuning}}.log",
    wildcard_constraints:
        tuning="tuning-[0-9a-f]+",
    priority: TUNING_PRIORITY
    conda:
        "../envs/lit.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        args=tune_args,
        grids=tune_grids,
        teacher=tune_teacher_dir,
        out_dir=tune_out_dir,
    shell:
        "OMP_NUM_THREADS={threads} lit tune {input.config} {params.args} --teacher {params.teacher} "
        "--out-dir {params.out_dir} {params.grids} >> {log} 2>&1"


rule tuning_report:
    input:
        trials=tuning_trials,
        figure=tuning_figure,
    output:
        trials=report(
            f"{RESULTS}/{{exp}}/{{exp}}-tuning.csv",
            caption="../report/tuning.rst",
            category="Tuning",
            labels={"experiment": "{exp}", "table": "validation tuning"},
        ),
        figure=report(
            f"{RESULTS}/{{exp}}/{{exp}}-tuning.png",
            caption="../report/tuning.rst",
            category="Tuning",
            labels={"experiment": "{exp}", "figure": "validation tuning"},
        ),
    log:
        f"{RESULTS}/logs/{{exp}}/tuning_report.log",
    localrule: True
    conda:
        "../envs/lit.yaml"
    shell:
        "(cp {input.trials} {output.trials} && cp {input.figure} {output.figure}) > {log} 2>&1"
