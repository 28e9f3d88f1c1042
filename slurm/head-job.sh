#!/usr/bin/env bash
# The head job of one recording on a SLURM cluster: the Snakemake process that submits
# the recording's jobs (through the profile in slurm/profile) and waits for them. The
# poller submits it (pipeline/executor/slurm.py), so that no long process runs on the
# login node:
#
#   sbatch --output logs/runs/RUN.log [--partition P] [--account A] slurm/head-job.sh SNAKEMAKE-COMMAND...
#
# It needs little: one core, some memory, and as long as a day's recording takes on the
# cluster (hours). EDIT the defaults below if your cluster wants others; the values of
# executor.head_mem_mb and executor.head_time in config.yaml are given to sbatch and win.
#SBATCH --job-name=ephys-head
#SBATCH --cpus-per-task=1
#SBATCH --mem=1000
#SBATCH --time=1-00:00:00
set -euo pipefail
echo "head job ${SLURM_JOB_ID:-?} on $(hostname) at $(date -Is)"
exec "$@"
