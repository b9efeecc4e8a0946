# Data preparation runs where the network is (a login node, on a cluster): it downloads
# and caches the data set once; training jobs then read it offline.


rule prepare_data:
    input:
        config=data_config,
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
        args=data_args,
    shell:
        "lit prepare-data {input.config} {params.args} --output {output} > {log} 2>&1"
