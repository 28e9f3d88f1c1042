# The workflow: raw recording -> LFP segments -> spectrograms -> features -> sleep
# states -> figures -> published results, for every recording in state/recordings.tsv.
#
#   snakemake --cores 2                                   every registered recording
#   snakemake --cores 2 results/REC/published.json        one recording
#   snakemake --profile slurm/profile                     on the cluster
#
# Rules hold wiring only; the work is done by `python -m pipeline <stage>` (the same
# commands a maintainer can run by hand).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/convert.smk"
include: "rules/spectrogram.smk"
include: "rules/sleep.smk"
include: "rules/figures.smk"
include: "rules/publish.smk"


rule all:
    input:
        all_targets(),
    default_target: True
