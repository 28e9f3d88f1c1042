rule figures:
    input:
        info=OUT["recording_json"],
        hypnogram=OUT["hypnogram"],
        summary=OUT["summary"],
        spectrograms=segment_outputs("spectrogram"),
        lfp_qc=segment_outputs("lfp_qc"),
        head_speed=head_speed_outputs,
    output:
        **{name: OUT[name] for name in layout.FIGURE_OUTPUTS},
    params:
        run_id=lambda w: registered(w.rec).run_id or "-",
        lights_on=json_param(SETTINGS["figures"]["lights_on"]),
        lights_off=json_param(SETTINGS["figures"]["lights_off"]),
        hours_per_page=SETTINGS["figures"]["hours_per_page"],
        analysis=analysis_settings,
        head_speed=head_speed_option,
    log:
        LOG["figures"],
    group:
        "recording"
    resources:
        mem_mb=grows(2000),
        runtime=grows(30),
    shell:
        "ephys figures {input.info:q} --hypnogram {input.hypnogram:q} --summary {input.summary:q} "
        "--spectrograms {input.spectrograms:q} --lfp-qc {input.lfp_qc:q} "
        "--overview {output.overview:q} --architecture {output.architecture:q} --channel-qc {output.channel_qc:q} "
        "--report {output.report:q} --provenance {output.provenance:q} "
        "--lights-on {params.lights_on} --lights-off {params.lights_off} --hours-per-page {params.hours_per_page} "
        "--analysis-settings {params.analysis:q} --run-id {params.run_id:q} {params.head_speed} > {log:q} 2>&1"
