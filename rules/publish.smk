rule publish:
    input:
        [OUT[name] for name in layout.PUBLISHED],
    output:
        OUT["published"],
    params:
        animal=lambda w: registered(w.rec).animal,
        # The store is read from the configuration file; where it points is a param,
        # so that moving the store publishes again.
        config=CFG["config_file"],
        store=json_param(CFG["store"]),
    log:
        LOG["publish"],
    shell:
        "ephys --config {params.config:q} publish {params.animal:q} {wildcards.rec:q} {output:q} {input:q} "
        "> {log:q} 2>&1"
