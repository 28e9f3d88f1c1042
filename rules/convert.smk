checkpoint inspect:
    input:
        raw_inputs,
    output:
        OUT["recording_json"],
    params:
        raw=lambda w: registered(w.rec).raw_path,
        animal=lambda w: registered(w.rec).animal,
        lfp_rate=SETTINGS["inspect"]["lfp_rate"],
        segment_s=SETTINGS["inspect"]["segment_s"],
        channel_map=channel_map_param,
    log:
        LOG["inspect"],
    shell:
        "ephys inspect {params.raw:q} {output:q} --recording-id {wildcards.rec:q} --animal {params.animal:q} "
        "--lfp-rate {params.lfp_rate} --segment-s {params.segment_s} --channel-map {params.channel_map:q} "
        "> {log:q} 2>&1"


rule convert:
    # Everything conversion needs (the filter taps included) is in recording.json.
    input:
        OUT["recording_json"],
    output:
        fif=OUT["lfp"],
        qc=OUT["lfp_qc"],
    log:
        LOG["convert"],
    resources:
        mem_mb=1000,
    shell:
        "ephys convert-segment {input:q} {wildcards.k} {output.fif:q} --qc {output.qc:q} > {log:q} 2>&1"
