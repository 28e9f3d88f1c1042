"""How far a recording has got and why it stopped, read from the files it left behind.

Shared by the poller (which writes it into the sheet) and `ephys status`: the outputs
say which stages are complete, the job logs say why one failed (their first line
starting with "ERROR: "), the run file and the executor say whether work is going on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline import layout
from pipeline.errors import KILLED, TEMPORARY, PipelineError, killed_words
from pipeline.executor import Executor, Run
from pipeline.io.recording_info import RecordingInfo
from pipeline.layout import RecordingPaths

STAGE_WORDS = {
    "inspect": "Checking the raw files", "convert": "Converting to LFP", "spectrogram": "Computing spectrograms",
    "features": "Computing sleep features", "classify": "Scoring sleep states", "figures": "Drawing figures",
    "publish": "Publishing results",
}
STAGES = tuple(STAGE_WORDS)
# Share of the work each stage takes (conversion dominates), for the percentage shown.
_WEIGHTS = {"inspect": 2, "convert": 60, "spectrogram": 10, "features": 5, "classify": 5, "figures": 10, "publish": 8}
_SEGMENT_STAGES = ("convert", "spectrogram", "features")
_SEGMENT_OUTPUT = {"convert": "lfp", "spectrogram": "spectrogram", "features": "features"}


@dataclass
class Progress:
    fraction: float
    text: str


def segment_count(paths: RecordingPaths) -> int | None:
    """Segments of the recording, once inspect has written recording.json."""
    if not paths.recording_json.exists():
        return None
    try:
        return len(RecordingInfo.load(paths.recording_json).segments)
    except PipelineError:  # being replaced, or from another version: its stage will say why
        return None


def recording_progress(base: str | Path, rec_id: str) -> Progress:
    """How far a recording has got, from its outputs."""
    paths = RecordingPaths(rec_id, base)
    if paths.published.exists():
        return Progress(1.0, "100% · published")
    n = segment_count(paths)
    if n is None:
        return Progress(0.0, "0% · " + STAGE_WORDS["inspect"])
    done = {s: sum(p.exists() for p in paths.segment_outputs(_SEGMENT_OUTPUT[s], n)) for s in _SEGMENT_STAGES}
    work = _WEIGHTS["inspect"] + sum(_WEIGHTS[s] * done[s] / n for s in _SEGMENT_STAGES)
    stage = next((s for s in _SEGMENT_STAGES if done[s] < n), None)
    if stage:
        text = f"{STAGE_WORDS[stage]} ({done[stage]}/{n} segments)"
    elif not paths.summary.exists():
        text = STAGE_WORDS["classify"]
    elif not paths.report.exists():
        work += _WEIGHTS["classify"]
        text = STAGE_WORDS["figures"]
    else:
        work += _WEIGHTS["classify"] + _WEIGHTS["figures"]
        text = STAGE_WORDS["publish"]
    frac = work / sum(_WEIGHTS.values())
    return Progress(frac, f"{int(100 * frac)}% · {text}")


def first_error(base: str | Path, rec_id: str, since: float = 0.0) -> tuple[str, bool] | None:
    """The first error a stage wrote into its log since `since` (a time stamp), in words
    with the log that holds it; and whether it was a back-end that could not be reached.

    Stages are taken in workflow order, so a failed conversion is named rather than the
    figures that could not be drawn because of it.
    """
    base = Path(base)
    logs = RecordingPaths(rec_id, base).logs
    found = []
    if logs.is_dir():
        for p in logs.rglob("*.log"):
            try:
                mtime = p.stat().st_mtime
                if mtime < since - 1:
                    continue
            except OSError:
                continue
            line = _first_error_line(p)
            if line:
                stage = layout.stage_of_log(logs, p)
                found.append((STAGES.index(stage) if stage in STAGES else 99, mtime, stage, line, p))
    if not found:
        return None
    _, _, stage, msg, path = min(found)
    text = f"{STAGE_WORDS.get(stage, stage)} failed: {msg.removeprefix(TEMPORARY)} (log: {path.relative_to(base)})"
    return text, msg.startswith(TEMPORARY)


def done_message(base: str | Path, rec_id: str, n_files: int) -> str:
    """What a finished recording's row says: the time in each state (and the share not
    scored, if any), then what inspect found worth saying (channels missing from the
    folder or ending early) and what scoring did (time in no epoch, epochs unclassified
    because of a gap, a state never found), so that nobody has to open a log to learn
    why the percentages do not add up."""
    paths = RecordingPaths(rec_id, base)
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
        frac, scoring_notes = summary["fractions"], [str(n) for n in summary.get("notes", [])]
        # A trained model was chosen (the row's sleep model, or the config's): say which.
        model = [f"Scored by the sleep model {summary['model_version']}."] if summary.get("method") == "xgboost" \
            and summary.get("model_version") else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        frac, scoring_notes, model = {}, [], []
    shown = [s for s in ("wake", "nrem", "rem") if s in frac]
    if frac.get("unclassified", 0) >= 0.005:
        shown.append("unclassified")
    states = ", ".join(f"{s} {100 * frac[s]:.0f}%" for s in shown)
    try:
        notes = RecordingInfo.load(paths.recording_json).notes
    except PipelineError:  # removed, or from another version: the published results stand
        notes = []
    return " ".join([f"Finished: {n_files} files published ({states}).", *model, *notes,
                     *map(_sentence, scoring_notes)])


def _sentence(note: str) -> str:
    """'6 epochs (20.0%) are unclassified ...' as a sentence of the row's message."""
    note = note.strip()
    return note[:1].upper() + note[1:] + ("" if note.endswith((".", "!", "?")) else ".")


@dataclass
class RecordingState:
    state: str  # registered, queued, running, done, failed, cancelled, incomplete
    progress: str
    message: str = ""
    link: str = ""
    temporary: bool = False  # failed because a back-end could not be reached: worth starting again


def recording_state(base: str | Path, rec_id: str, run: Run | None, executor: Executor | None) -> RecordingState:
    """Where a registered recording stands: running (its run is going on), done
    (published), failed (its run ended without publishing), or, for a recording no run
    of the poller's has touched, registered / incomplete / failed from its files."""
    from pipeline.store import read_published

    base = Path(base)
    paths = RecordingPaths(rec_id, base)
    p = recording_progress(base, rec_id)
    if run is not None and run.cancelled_at:
        return RecordingState("cancelled", p.text, f"Cancelled at {run.cancelled_at[:16].replace('T', ' ')} "
                                                   "(ephys cancel); tick rerun to process it again.")
    if run is not None and executor is not None and executor.is_running(run):
        activity = executor.activity(run)
        if activity is not None and activity.queued:
            return RecordingState("queued", "0% · waiting for the cluster")
        return RecordingState("running", with_jobs(p.text, activity))
    if paths.published.exists():
        pub = read_published(paths.published)
        return RecordingState("done", "100%", done_message(base, rec_id, len(pub.files)), pub.link)
    since = _timestamp(run.started_at) if run is not None and run.started_at else 0.0
    err, temporary = first_error(base, rec_id, since) or (None, False)
    if run is not None and run.started_at:
        if err is None and executor is not None:
            err = executor.explain_failure(run)
        if err is None:
            err = killed_job(base, rec_id, run)
        if err is None and run.log and _workflow_was_killed(base / run.log):
            # Snakemake and its jobs ended all at once (power loss, kill -9 of the run): nothing
            # wrong with the data, so the poller starts it again and Snakemake goes on from
            # the outputs that are complete (--rerun-incomplete re-makes the killed jobs').
            return RecordingState("failed", p.text, WORKFLOW_KILLED, temporary=True)
        if err is None:
            workflow_err = _first_error_line(base / run.log) if run.log else None
            err = (f"The workflow could not run: {workflow_err}" if workflow_err else
                   f"The run stopped before finishing; a maintainer can read {run.log or 'its log'}.")
        return RecordingState("failed", p.text, err, temporary=temporary)
    if err:
        return RecordingState("failed", p.text, err, temporary=temporary)
    return RecordingState("incomplete" if p.fraction > 0 else "registered", p.text)


WORKFLOW_KILLED = ("The workflow was killed before it finished (the machine stopped, out of memory, or someone "
                   "stopped it); what was complete is kept.")
# What Snakemake's own log ends with when it stopped by itself, failed or not.
_WORKFLOW_ENDINGS = re.compile(r"Complete log|Error|Exception|Exiting|Nothing to be done|Terminating processes|"
                               r"steps \(100%\) done")


def killed_job(base: Path, rec_id: str, run: Run) -> str | None:
    """'Converting to LFP failed: the job was killed (...)' when the workflow's log says a
    job of the recording died of SIGKILL (the OOM killer) and left no error of its own."""
    try:
        text = (base / run.log).read_text(encoding="utf-8", errors="replace") if run.log else ""
    except OSError:
        return None
    logs = RecordingPaths(rec_id, base).logs
    before = 0
    for m in re.finditer(r"^Error in rule (\w+):\n((?:[ \t]+.*\n?)*)", text, re.MULTILINE):
        status = re.findall(r"non-zero exit status (-?\d+)", text[before:m.start()])
        before = m.end()
        job_log = re.search(r"^\s+log: (\S+)", m.group(2), re.MULTILINE)
        if not status or not killed_words(int(status[-1])) or not job_log:
            continue
        path = base / job_log.group(1)
        if not path.is_relative_to(logs):
            continue
        stage = layout.stage_of_log(logs, path)
        return (f"{STAGE_WORDS.get(stage, stage)} failed: {KILLED}; tick rerun to go on from where it stopped "
                f"(log: {job_log.group(1)}).")
    return None


def _workflow_was_killed(run_log: Path) -> bool:
    """Whether Snakemake's log ends abruptly: it was killed, not stopped by an error."""
    try:
        with open(run_log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    return not _WORKFLOW_ENDINGS.search(tail)


def with_jobs(text: str, activity) -> str:
    """'Converting to LFP (14/24 segments)' -> 'Converting to LFP (14/24 segments, 10 running, 2 waiting)'."""
    if activity is None or not (activity.running or activity.waiting):
        return text
    jobs = ", ".join(f"{n} {what}" for n, what in ((activity.running, "running"), (activity.waiting, "waiting")) if n)
    return text[:-1] + f", {jobs})" if text.endswith(")") else f"{text} ({jobs})"


def _first_error_line(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return next((ln.rstrip("\n")[7:] for ln in f if ln.startswith("ERROR: ")), None)
    except OSError:
        return None


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
