rule features:
    input:
        "results/{rec}/spectrogram/seg{k}.npz",
    output:
        "results/{rec}/features/seg{k}.tsv",
    log:
        "logs/{rec}/features/seg{k}.log",
    shell:
        "{EPHYS} features {input:q} {output:q} > {log:q} 2>&1"


rule classify:
    # Smoothing over time needs the whole recording, so this joins all segments.
    input:
        info="results/{rec}/recording.json",
        features=segment_outputs("results/{rec}/features/seg{k}.tsv"),
    output:
        hypnogram="results/{rec}/sleep/hypnogram.tsv",
        probabilities="results/{rec}/sleep/probabilities.tsv",
        annotations="results/{rec}/sleep/hypnogram-annot.fif",
        summary="results/{rec}/sleep/summary.json",
    params:
        out_dir=lambda w: f"results/{w.rec}/sleep",
    log:
        "logs/{rec}/classify.log",
    shell:
        "{EPHYS} score {input.info:q} {params.out_dir:q} {input.features:q} > {log:q} 2>&1"
