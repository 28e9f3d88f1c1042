rule spectrogram:
    input:
        info=OUT["recording_json"],
        lfp=OUT["lfp"],
        **({"emg": OUT["lfp_emg"]} if EMG_AT_CONVERT else {}),
    output:
        OUT["spectrogram"],
    params:
        epoch_s=SETTINGS["spectrogram"]["epoch_s"],
        time_bandwidth=SETTINGS["spectrogram"]["time_bandwidth"],
        fmax=SETTINGS["spectrogram"]["fmax"],
        per_channel="yes" if SETTINGS["spectrogram"]["per_channel"] else "no",
    log:
        LOG["spectrogram"],
    group:
        "segment"
    resources:
        mem_mb=grows(1500),  # regions are averaged in chunks: ~220 MB measured for 30 min of 62 channels
        runtime=grows(15),
    shell:
        "ephys spectrogram {input.info:q} {input.lfp:q} {output:q} --epoch-s {params.epoch_s} "
        "--time-bandwidth {params.time_bandwidth} --fmax {params.fmax} --per-channel {params.per_channel}"
        + (" --lfp-emg {input.emg:q}" if EMG_AT_CONVERT else "")
        + " > {log:q} 2>&1"
