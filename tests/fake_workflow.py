"""A stand-in for the Snakemake workflow, for poller tests where the workflow itself is
not what is tested: it leaves behind, stage by stage and at a chosen pace, the files a
real run leaves (stand-ins where their content does not matter to the poller), publishes
them through the configured results store, and can fail a stage with an error in its
log, or hang until it is killed.

    python fake_workflow.py CONFIG_FILE SCENARIOS_JSON TARGET...

SCENARIOS_JSON maps a recording id to {"segments": 3, "step_s": 0.05, "slow": {"convert":
0.3}, "fail_at": "convert", "error": "...", "hang_at": "spectrogram", "lose_before_publish":
["report"]}; every key is optional (`step_s` is each job's time, `slow` that of the jobs
of some stages; `killed_at` ends a stage's first job as the OOM killer would, Snakemake's
log saying so).
`FakeWorkflowExecutor` runs it through the real local executor (a detached process,
a run file), so starting, watching and stopping a run are the real thing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipeline import layout
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.executor import Run
from pipeline.executor.local import LocalExecutor
from pipeline.io.atomic import write_json_atomic, write_text_atomic
from pipeline.io.recording_info import RecordingInfo, Segment
from pipeline.io.registry import Registry
from pipeline.layout import RecordingPaths
from pipeline.store import publish_recording

HERE = Path(__file__).resolve()


class FakeWorkflowExecutor(LocalExecutor):
    """The local executor, running this script instead of Snakemake."""

    def __init__(self, config: dict, scenarios: dict[str, dict] | None = None):
        super().__init__(config)
        self.scenarios = scenarios or {}

    def command(self, run: Run) -> list[str]:
        chosen = {r: self.scenarios.get(r, {}) for r in run.recordings}
        return [sys.executable, str(HERE), self.config["config_file"], json.dumps(chosen), *run.targets]


def _stage(paths: RecordingPaths, scenario: dict, stage: str, k: int | None = None) -> None:
    time.sleep(float(scenario.get("slow", {}).get(stage, scenario.get("step_s", 0.05))))
    if scenario.get("hang_at") == stage:
        time.sleep(3600)
    if scenario.get("fail_at") == stage:
        log = paths.log(stage, k)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"working on it\nERROR: {scenario.get('error', 'something is wrong')}\n")
        sys.exit(1)
    if scenario.get("killed_at") == stage:
        # The OOM killer ends the job: its log stops short, and Snakemake 9 says so in its own.
        log = paths.log(stage, k)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("working on it\n")
        rel = log.relative_to(paths.base) if log.is_absolute() else log
        print(f"/usr/bin/bash: line 1:  5306 Killed                  ephys {stage} > {rel} 2>&1\n"
              f"RuleException:\nCalledProcessError in file \"rules/x.smk\", line 4:\n"
              f"Command 'set -euo pipefail;  ephys {stage} > {rel} 2>&1' returned non-zero exit status 137.\n"
              f"[Wed Dec  2 13:28:29 2026]\nError in rule {stage}:\n    message: None\n    jobid: 3\n"
              f"    log: {rel} (check log file(s) for error details)\n    shell:\n        ephys {stage} > {rel} 2>&1\n"
              f"        (command exited with non-zero exit code)\n"
              f"Exiting because a job execution failed. Look above for error messages", flush=True)
        sys.exit(1)


def run_recording(config: dict, rec_id: str, scenario: dict) -> None:
    base = Path(config["base_dir"])
    paths = RecordingPaths(rec_id, base)
    n = int(scenario.get("segments", 3))
    _stage(paths, scenario, "inspect")
    RecordingInfo(
        recording_id=rec_id, animal=None, format="fake", raw_path="", pipeline_version="", inspected_at="",
        start_time="2026-01-05T07:00:00+00:00", first_timestamp_us=0, sampling_rate=2000.0, n_samples=n * 2000,
        duration_s=float(n), lfp_rate=1000.0, n_lfp_samples=n * 1000, decimator={}, segment_samples=1000,
        segments=[Segment(k, float(k), 1.0) for k in range(n)], channel_map_source="", channel_map={},
        channels=[], unmapped_channels=[], gaps=[], channels_ending_early={}, files=[],
    ).save(paths.recording_json)
    for stage, name in (("convert", "lfp"), ("spectrogram", "spectrogram"), ("features", "features")):
        for k in range(n):
            _stage(paths, scenario, stage, k)
            write_text_atomic(paths.output(name, k), "")
    _stage(paths, scenario, "classify")
    write_json_atomic(paths.summary, {"fractions": {"wake": 0.5, "nrem": 0.4, "rem": 0.1, "unclassified": 0.0}})
    write_text_atomic(paths.hypnogram, "onset_s\tduration_s\tstate\tconfidence\n")
    _stage(paths, scenario, "figures")
    for name in layout.FIGURE_OUTPUTS:
        write_text_atomic(paths.output(name), f"{name} of {rec_id}\n")
    _stage(paths, scenario, "publish")
    for name in scenario.get("lose_before_publish", []):  # a file gone (unreadable, deleted) as publish starts
        paths.output(name).unlink()
    animal = Registry(base / layout.STATE_DIR).read()[rec_id].animal
    try:
        publish_recording(config, animal, rec_id, [paths.output(name) for name in layout.PUBLISHED], paths.published)
    except PipelineError as e:  # as `ephys publish` reports it
        paths.log("publish").parent.mkdir(parents=True, exist_ok=True)
        paths.log("publish").write_text(f"ERROR: {e}\n")
        sys.exit(1)


def main(argv: list[str]) -> int:
    config, scenarios, targets = load_config(argv[0]), json.loads(argv[1]), argv[2:]
    for target in targets:
        rec_id = Path(target).parts[1]  # results/REC/published.json
        run_recording(config, rec_id, scenarios.get(rec_id, {}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
