checkpoint inspect:
    input:
        raw_files,
    output:
        "results/{rec}/recording.json",
    params:
        raw=lambda w: registered(w.rec).raw_path,
        animal=lambda w: registered(w.rec).animal,
    log:
        "logs/{rec}/inspect.log",
    shell:
        "{EPHYS} inspect {params.raw:q} {output:q} --recording-id {wildcards.rec:q} "
        "--animal {params.animal:q} > {log:q} 2>&1"


rule convert:
    input:
        "results/{rec}/recording.json",
    output:
        fif="results/{rec}/lfp/seg{k}.fif",
        qc="results/{rec}/lfp/seg{k}.json",
    log:
        "logs/{rec}/convert/seg{k}.log",
    resources:
        mem_mb=1000,
    shell:
        "{EPHYS} convert-segment {input:q} {wildcards.k} {output.fif:q} > {log:q} 2>&1"
