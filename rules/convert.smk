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
    resources:
        # Reads every record header once (a day of 64 channels: ~350 GB at disk speed).
        mem_mb=grows(1000),
        runtime=grows(90),
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
        **({"emg": OUT["lfp_emg"]} if EMG_AT_CONVERT else {}),
    params:
        **({"epoch_s": SETTINGS["spectrogram"]["epoch_s"]} if EMG_AT_CONVERT else {}),
    log:
        LOG["convert"],
    # On a cluster the three stages of one segment run as one job (less queueing).
    group:
        "segment"
    resources:
        # bench/convert.py: ~300 MB whatever the segment's length; an hour in under a minute.
        # With EMG_AT_CONVERT, + ~30 MB per brain region and hour of segment (float32 at ~2 kHz).
        mem_mb=grows(1000),
        runtime=grows(30),
    shell:
        "ephys convert-segment {input:q} {wildcards.k} {output.fif:q} --qc {output.qc:q}"
        + (" --lfp-emg {output.emg:q} --epoch-s {params.epoch_s}" if EMG_AT_CONVERT else "")
        + " > {log:q} 2>&1"
