rule publish:
    input:
        overview="results/{rec}/figures/overview.png",
        qc="results/{rec}/figures/channel_qc.png",
        report="results/{rec}/figures/report.pdf",
        hypnogram="results/{rec}/sleep/hypnogram.tsv",
    output:
        "results/{rec}/published.json",
    params:
        animal=lambda w: registered(w.rec).animal,
    log:
        "logs/{rec}/publish.log",
    shell:
        "{EPHYS} publish {params.animal:q} {wildcards.rec:q} {output:q} "
        "{input.overview:q} {input.qc:q} {input.report:q} {input.hypnogram:q} > {log:q} 2>&1"
