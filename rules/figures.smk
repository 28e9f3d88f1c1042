rule figures:
    input:
        info=OUT["recording_json"],
        hypnogram=OUT["hypnogram"],
        summary=OUT["summary"],
        spectrograms=segment_outputs("spectrogram"),
    output:
        overview=OUT["overview"],
        qc=OUT["channel_qc"],
        report=OUT["report"],
    params:
        run_id=lambda w: registered(w.rec).run_id or "-",
    log:
        LOG["figures"],
    group:
        "recording"
    resources:
        mem_mb=grows(2000),
        runtime=grows(30),
    shell:
        "ephys figures {input.info:q} --hypnogram {input.hypnogram:q} --summary {input.summary:q} "
        "--spectrograms {input.spectrograms:q} --overview {output.overview:q} --channel-qc {output.qc:q} "
        "--report {output.report:q} --run-id {params.run_id:q} > {log:q} 2>&1"
