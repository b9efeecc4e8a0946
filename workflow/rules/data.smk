# Data preparation runs where the network is (a login node, on a cluster): it downloads
# and caches the data set once; training jobs then read it offline.


rule prepare_data:
    input:
        config=lambda w: RUNS[(w.exp, teacher_run_id(w.exp))].base,
    output:
        f"{RESULTS}/{{exp}}/data.json",
    params:
        args=lambda w: RUNS[(w.exp, teacher_run_id(w.exp))].args,
    log:
        f"{RESULTS}/{{exp}}/logs/prepare_data.log",
    localrule: True
    shell:
        "{LIT} prepare-data {input.config} {params.args} --output {output} > {log} 2>&1"


def teacher_run_id(exp):
    return next(run.run_id for (name, _), run in RUNS.items() if name == exp and run.role == "teacher")
