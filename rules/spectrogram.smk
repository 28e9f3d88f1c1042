rule spectrogram:
    input:
        info="results/{rec}/recording.json",
        lfp="results/{rec}/lfp/seg{k}.fif",
    output:
        "results/{rec}/spectrogram/seg{k}.npz",
    log:
        "logs/{rec}/spectrogram/seg{k}.log",
    resources:
        mem_mb=1000,  # regions are averaged in chunks: ~220 MB measured for 30 min of 62 channels
    shell:
        "{EPHYS} spectrogram {input.info:q} {input.lfp:q} {output:q} > {log:q} 2>&1"
