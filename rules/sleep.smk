rule features:
    input:
        OUT["spectrogram"],
    output:
        OUT["features"],
    log:
        LOG["features"],
    group:
        "segment"
    resources:
        mem_mb=grows(500),
        runtime=grows(10),
    shell:
        "ephys features {input:q} {output:q} > {log:q} 2>&1"


rule head_speed:
    # Only for recordings with video tracking: a CSV their row names, or one in the raw
    # folder (common.smk: tracking_inputs, head_speed_outputs).
    input:
        info=OUT["recording_json"],
        tracking=tracking_inputs,
    output:
        tsv=OUT["head_speed"],
        json=OUT["head_speed_json"],
    params:
        # The param keeps its name, and the command its words, so that recordings
        # tracked from their raw folder are not computed again.
        raw=head_speed_source,
        epoch_s=SETTINGS["tracking"]["epoch_s"],
        tracking=json_param({k: v for k, v in SETTINGS["tracking"].items() if k != "epoch_s"}),
    log:
        LOG["head_speed"],
    group:
        "recording"
    resources:
        mem_mb=grows(1000),  # a day at 30 frames/s: 2.6 M frames, a few hundred MB with all body parts
        runtime=grows(15),
    shell:
        "ephys head-speed {input.info:q} {params.raw:q} {output.tsv:q} --json {output.json:q} "
        "--epoch-s {params.epoch_s} --tracking {params.tracking:q} > {log:q} 2>&1"


rule classify:
    # Smoothing over time needs the whole recording, so this joins all segments.
    input:
        info=OUT["recording_json"],
        features=segment_outputs("features"),
        head_speed=head_speed_outputs,
        # The recording's sleep model (its sheet row's, else sleep.model), if a file.
        model=sleep_model_input,
    output:
        hypnogram=OUT["hypnogram"],
        probabilities=OUT["probabilities"],
        annotations=OUT["annotations"],
        summary=OUT["summary"],
        review=OUT["review"],
    params:
        epoch_s=SETTINGS["classify"]["epoch_s"],
        # The model's version, not only its name: a new version of the scorer scores
        # every recording again.
        model_version=lambda w: classify_settings(w.rec)["model"],
        model=sleep_model_param,
        min_confidence=SETTINGS["classify"]["min_confidence"],
        min_bout_s=SETTINGS["classify"]["min_bout_s"],
        n_review=SETTINGS["classify"]["n_review"],
        head_speed=head_speed_option,
    log:
        LOG["classify"],
    # Classification and figures of one recording run as one job on a cluster.
    group:
        "recording"
    resources:
        mem_mb=grows(2000),
        runtime=grows(30),
    shell:
        "ephys classify {input.info:q} {input.features:q} --epoch-s {params.epoch_s} --model {params.model:q} "
        "--min-confidence {params.min_confidence} --min-bout-s {params.min_bout_s} --n-review {params.n_review} "
        "{params.head_speed} "
        "--hypnogram {output.hypnogram:q} --probabilities {output.probabilities:q} "
        "--annotations {output.annotations:q} --summary {output.summary:q} --review {output.review:q} > {log:q} 2>&1"
