rule figures:
    input:
        info="results/{rec}/recording.json",
        hypnogram="results/{rec}/sleep/hypnogram.tsv",
        summary="results/{rec}/sleep/summary.json",
        spectrograms=segment_outputs("results/{rec}/spectrogram/seg{k}.npz"),
    output:
        overview="results/{rec}/figures/overview.png",
        qc="results/{rec}/figures/channel_qc.png",
        report="results/{rec}/figures/report.pdf",
    params:
        sleep_dir=lambda w: f"results/{w.rec}/sleep",
        out_dir=lambda w: f"results/{w.rec}/figures",
        run_id=lambda w: registered(w.rec).run_id or "-",
    log:
        "logs/{rec}/figures.log",
    shell:
        "{EPHYS} figures {input.info:q} {params.sleep_dir:q} {params.out_dir:q} "
        "{input.spectrograms:q} --run-id {params.run_id:q} > {log:q} 2>&1"
