# The workflow: raw recording -> LFP segments -> spectrograms -> features -> sleep
# states -> figures -> published results, for every recording in state/recordings.tsv.
#
#   snakemake --cores 2                                   every registered recording
#   snakemake --cores 2 results/REC/published.json        one recording
#   snakemake --configfile /lab/config.yaml --cores 2     that project (only that file is read)
#   snakemake --profile slurm/profile                     on the cluster
#
# Rules hold wiring only: paths come from pipeline/layout.py, configuration values that
# change an output reach the `ephys` sub-commands as explicit options through `params:`
# (so changing one re-runs exactly the outputs it affects), and the work is done by
# the same `ephys` commands a maintainer can run by hand.

from snakemake.utils import min_version

min_version("9.0")


include: "rules/common.smk"
include: "rules/convert.smk"
include: "rules/spectrogram.smk"
include: "rules/sleep.smk"
include: "rules/figures.smk"
include: "rules/publish.smk"


# On a cluster these run in the head job itself: `all` is bookkeeping, and publishing
# needs the network (Google Drive), which compute nodes often lack.
localrules:
    all,
    publish,


rule all:
    input:
        all_targets(),
    default_target: True
