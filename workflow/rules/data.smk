# Data preparation runs where the network is (a login node, on a cluster): it downloads
# and caches the data set once; training jobs then read it offline.


rule prepare_data:
    input:
        config=lambda w: ancient(RUNS[(w.exp, teacher_run_id(w.exp))].base),
    output:
        f"{RESULTS}/runs/{{exp}}/data.json",
    log:
        f"{RESULTS}/logs/{{exp}}/prepare_data.log",
    localrule: True
    conda:
        "../envs/lit.yaml"
    resources:
        # experiments may share a data set: one download and extraction at a time
        data_preparation=1,
    params:
        args=lambda w: RUNS[(w.exp, teacher_run_id(w.exp))].args,
        kind=lambda w: "--gan" if experiment_kind(w.exp) == "gan" else "",
    shell:
        "lit prepare-data {params.kind} {input.config} {params.args} --output {output} > {log} 2>&1"
