rule spectrogram:
    input:
        info="results/{rec}/recording.json",
        lfp="results/{rec}/lfp/seg{k}.fif",
    output:
        "results/{rec}/spectrogram/seg{k}.npz",
    log:
        "logs/{rec}/spectrogram/seg{k}.log",
    resources:
        mem_mb=2000,
    shell:
        "{EPHYS} spectrogram {input.info:q} {input.lfp:q} {output:q} > {log:q} 2>&1"
