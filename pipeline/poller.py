"""One poll: read the sheet, reconcile it with the file system, run the work, write back.

The sheet is only the trigger: valid rows are registered in state/recordings.tsv and
Snakemake reads that. What a recording has reached is read from its outputs and logs,
so a poller that was killed picks up where things are. A row is claimed (`queued`,
with a run id) before any work starts, and every change of one poll goes to the sheet
in one batched write, to rows found by who they are rather than where they were.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.errors import PipelineError, RowError
from pipeline.io.registry import Recording, Registry, check_name, new_run_id, resolve_raw_path
from pipeline.sheets.local_csv import LocalCsvSheet, row_key

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO_ROOT / "Snakefile"
TRUTHY = {"1", "true", "yes", "y", "x", "✓", "☑", "rerun"}

# Pipeline stages in order, with the outputs that show each is done.
STAGES = ("inspect", "convert", "spectrogram", "features", "classify", "figures", "publish")
STAGE_WORDS = {
    "inspect": "Checking the raw files", "convert": "Converting to LFP", "spectrogram": "Computing spectrograms",
    "features": "Computing sleep features", "classify": "Scoring sleep states", "figures": "Drawing figures",
    "publish": "Publishing results",
}


def now_text() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")


def make_sheet(config: dict):
    if config["sheet"]["backend"] == "local":
        return LocalCsvSheet(config["sheet"]["path"])
    raise PipelineError(f"unknown sheet back-end {config['sheet']['backend']!r}")


@dataclass
class Progress:
    fraction: float
    stage: str
    text: str


def recording_progress(base: Path, rec_id: str) -> Progress:
    """How far a recording has got, from the files it has left behind."""
    res = base / "results" / rec_id
    if (res / "published.json").exists():
        return Progress(1.0, "publish", "100% · published")
    info_path = res / "recording.json"
    if not info_path.exists():
        return Progress(0.0, "inspect", "0% · " + STAGE_WORDS["inspect"])
    try:
        n = len(json.loads(info_path.read_text())["segments"])
    except (OSError, ValueError, KeyError):
        n = 1
    counts = {
        "convert": len(list((res / "lfp").glob("seg*.fif"))),
        "spectrogram": len(list((res / "spectrogram").glob("seg*.npz"))),
        "features": len(list((res / "features").glob("seg*.tsv"))),
    }
    weights = {"inspect": 2, "convert": 60, "spectrogram": 10, "features": 5, "classify": 5, "figures": 10, "publish": 8}
    done = weights["inspect"] + sum(weights[s] * min(counts[s], n) / n for s in counts)
    stage = next((s for s in ("convert", "spectrogram", "features") if counts[s] < n), None)
    if stage:
        text = f"{STAGE_WORDS[stage]} ({counts[stage]}/{n} segments)"
    elif not (res / "sleep" / "summary.json").exists():
        stage, text = "classify", STAGE_WORDS["classify"]
    elif not (res / "figures" / "report.pdf").exists():
        done += weights["classify"]
        stage, text = "figures", STAGE_WORDS["figures"]
    else:
        done += weights["classify"] + weights["figures"]
        stage, text = "publish", STAGE_WORDS["publish"]
    frac = done / sum(weights.values())
    return Progress(frac, stage, f"{int(100 * frac)}% · {text}")


def failure_message(base: Path, rec_id: str, since: float) -> str | None:
    """The first error a stage of this run wrote into its log, in plain words."""
    logs = base / "logs" / rec_id
    found = []
    if logs.is_dir():
        for p in logs.rglob("*.log"):
            try:
                if p.stat().st_mtime < since - 1:
                    continue
                for line in p.read_text(errors="replace").splitlines():
                    if line.startswith("ERROR: "):
                        stage = p.relative_to(logs).parts[0].removesuffix(".log")
                        found.append((STAGES.index(stage) if stage in STAGES else 99, p.stat().st_mtime,
                                      stage, line[len("ERROR: "):]))
                        break
            except OSError:
                continue
    if not found:
        return None
    found.sort()
    _, _, stage, msg = found[0]
    return f"{STAGE_WORDS.get(stage, stage)} failed: {msg}"


@contextlib.contextmanager
def poller_lock(state_dir: Path):
    """Refuse to start while another poller runs (the lock dies with its process)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "poller.lock"
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise PipelineError(f"another poller is already running (pid {pid}); only one may write to the sheet.") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


@dataclass
class PollReport:
    registered: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    rows_written: int = 0


class Poller:
    def __init__(self, config: dict, config_path: str | Path):
        self.config = config
        self.config_path = str(Path(config_path).resolve())
        self.base = Path(config["base_dir"])
        self.sheet = make_sheet(config)
        self.registry = Registry(self.base / "state")

    # -- validation -------------------------------------------------------------
    def _validate(self, row: dict, rows: list[dict], registered: dict[str, Recording]) -> Recording:
        rec_id = check_name(row.get("recording_id", ""), "recording id")
        animal = check_name(row.get("animal", ""), "animal")
        raw = resolve_raw_path(row.get("raw_path", ""), self.config["data_roots"])
        same_id = [r for r in rows if (r.get("recording_id") or "").strip() == rec_id]
        if len({row_key(r) for r in same_id}) > 1:
            old = registered.get(rec_id)
            if not old or old.raw_path != str(raw) or old.animal != animal:
                raise RowError(
                    f"The recording id '{rec_id}' is used by more than one row. "
                    "Please give each recording its own id."
                )
        return Recording(rec_id, animal, str(raw), notes=(row.get("notes") or "").strip(), source="sheet")

    # -- one poll -----------------------------------------------------------------
    def poll_once(self) -> PollReport:
        report = PollReport()
        rows = self.sheet.read_rows()
        registered = self.registry.read()
        claims: list[tuple[tuple, dict]] = []
        to_run: dict[str, tuple] = {}
        forced: list[str] = []
        for row in rows:
            key = row_key(row)
            status = (row.get("status") or "").strip().lower()
            rerun = (row.get("rerun") or "").strip().lower() in TRUTHY
            if status in ("", "invalid") or rerun:
                try:
                    rec = self._validate(row, rows, registered)
                    old = registered.get(rec.recording_id)
                    if old and not rerun and (old.raw_path != rec.raw_path or old.animal != rec.animal):
                        raise RowError(
                            f"The recording id '{rec.recording_id}' is already used for another recording "
                            f"(animal {old.animal}). Please choose a different id, or tick rerun to replace it."
                        )
                except RowError as e:
                    msg = str(e)
                    if status != "invalid" or row.get("message") != msg:
                        claims.append((key, {"status": "invalid", "message": msg, "progress": "",
                                             "updated": now_text()}))
                    report.invalid.append(key[0] or "(no id)")
                    continue
                rec.run_id = new_run_id()
                self.registry.add(rec, replace=True)
                registered[rec.recording_id] = rec
                to_run[rec.recording_id] = key
                if rerun:
                    forced.append(rec.recording_id)
                    # Not published until this run publishes again.
                    with contextlib.suppress(FileNotFoundError):
                        (self.base / "results" / rec.recording_id / "published.json").unlink()
                report.registered.append(rec.recording_id)
                claims.append((key, {"status": "queued", "message": "Waiting to start.", "progress": "0%",
                                     "run_id": rec.run_id, "rerun": "", "results_link": "" if rerun else row.get("results_link", ""),
                                     "updated": now_text()}))
            elif status in ("queued", "running"):
                rec_id = key[0]
                if rec_id in registered:  # the poller that claimed it stopped: resume
                    to_run[rec_id] = key
        report.rows_written += self.sheet.apply_updates(claims)
        if to_run:
            report.ran = list(to_run)
            self._run(to_run, forced, report)
        return report

    def _run(self, to_run: dict[str, tuple], forced: list[str], report: PollReport) -> None:
        started = time.time()
        run_tag = datetime.now().strftime("%Y%m%d-%H%M%S")
        log_path = self.base / "logs" / "poller" / f"snakemake-{run_tag}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = snakemake_command(self.config, self.config_path,
                                [f"results/{r}/published.json" for r in to_run],
                                forcerun=[f"results/{r}/recording.json" for r in forced])
        log.info("running snakemake for %s (log: %s)", ", ".join(to_run), log_path)
        last_progress: dict[str, str] = {}
        interval = float(self.config["poller"]["progress_interval_s"])
        with open(log_path, "w") as out:
            proc = subprocess.Popen(cmd, cwd=self.base, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_stop_with_parent)
            try:
                while True:
                    try:
                        proc.wait(timeout=interval)
                        break
                    except subprocess.TimeoutExpired:
                        self._write_progress(to_run, last_progress, report)
            except BaseException:
                # Stopped by a signal: stop Snakemake too; the next poll resumes.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                raise
        updates = []
        for rec_id, key in to_run.items():
            res = self.base / "results" / rec_id
            marker = res / "published.json"
            if marker.exists():
                pub = json.loads(marker.read_text())
                summary = res / "sleep" / "summary.json"
                frac = json.loads(summary.read_text())["fractions"] if summary.exists() else {}
                states = ", ".join(f"{s} {100 * frac[s]:.0f}%" for s in ("wake", "nrem", "rem") if s in frac)
                updates.append((key, {"status": "done", "progress": "100%",
                                      "message": f"Finished: {len(pub['files'])} files published ({states}).",
                                      "results_link": pub["link"], "updated": now_text()}))
                report.done.append(rec_id)
            else:
                msg = failure_message(self.base, rec_id, started) or (
                    f"The run stopped before finishing; a maintainer can read {log_path.relative_to(self.base)}.")
                updates.append((key, {"status": "failed", "message": msg, "updated": now_text()}))
                report.failed.append(rec_id)
        report.rows_written += self.sheet.apply_updates(updates)

    def _write_progress(self, to_run: dict[str, tuple], last: dict[str, str], report: PollReport) -> None:
        updates = []
        for rec_id, key in to_run.items():
            p = recording_progress(self.base, rec_id)
            if last.get(rec_id) != p.text:
                last[rec_id] = p.text
                updates.append((key, {"status": "running", "progress": p.text, "message": "", "updated": now_text()}))
        try:
            report.rows_written += self.sheet.apply_updates(updates)
        except Exception as e:  # progress is best effort; the final write reports the outcome
            log.warning("could not write progress to the sheet: %s", e)


def _stop_with_parent() -> None:
    """In the Snakemake child: get SIGTERM if the poller dies, even by SIGKILL (Linux).

    Otherwise a killed poller leaves Snakemake running unwatched, holding the working
    directory's lock, and the next poller could not resume the run.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def snakemake_command(config: dict, config_path: str, targets: list[str], *, forcerun: list[str] = ()) -> list[str]:
    """The Snakemake command line, as a list (never through a shell)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", config_path,
           "--directory", config["base_dir"], "--cores", str(config["executor"]["cores"]),
           "--keep-going", "--rerun-incomplete", "--printshellcmds"]
    if forcerun:
        cmd += ["--forcerun", *forcerun]
    return cmd + ["--", *targets]


def poll_forever(poller_factory, interval_s: float) -> None:
    stop = {"now": False}

    def _stop(signum, frame):
        stop["now"] = True
        log.info("stopping after this poll")

    signal.signal(signal.SIGTERM, _stop)
    while not stop["now"]:
        try:
            report = poller_factory().poll_once()
            log.info("poll: %d registered, %d invalid, %d done, %d failed", len(report.registered),
                     len(report.invalid), len(report.done), len(report.failed))
        except PipelineError as e:
            log.error("%s", e)
        except OSError as e:
            log.error("poll failed, will try again: %s", e)
        for _ in range(int(interval_s * 10)):
            if stop["now"]:
                break
            time.sleep(0.1)
