"""The poller: one poll reads the sheet, registers and starts new rows, reads how every
active run is doing from the file system, writes all changes back, and returns.

A poll never waits for work: runs go on in the background (see pipeline.executor), and
each poll reports where they stand. The sheet is only the trigger: valid rows are
registered in state/recordings.tsv, which Snakemake reads. A row is claimed on disk
(the registry and a run file) before its run starts, and the sheet is told in the
poll's one batched write; a poller killed in between finds the unacknowledged run at
its next poll and adopts it, so nothing is ever started twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline import layout
from pipeline.config import check_data_roots
from pipeline.errors import BackendUnavailable, ConfigError, PipelineError, RowError, os_error_words
from pipeline.executor import Executor, Run, RunFiles, make_executor, now_iso
from pipeline.io.registry import (Recording, Registry, check_name, id_taken_message, new_run_id, resolve_raw_path,
                                  resolve_tracking_file, tracking_cell_path)
from pipeline.layout import RecordingPaths
from pipeline.progress import recording_state
from pipeline.sheets import Row, Sheet, Update, make_sheet, row_key
from pipeline.sleep.models import check_model_cell, same_model

log = logging.getLogger(__name__)

# What people type (or a checkbox exports: TRUE, WAHR, VRAI ...) in rerun, either way.
RERUN_YES = {"1", "true", "yes", "y", "x", "✓", "✔", "☑", "☒", "rerun", "again", "ja", "j", "oui", "o", "si", "sí",
             "sì", "wahr", "vrai", "verdadero", "vero", "waar", "sim", "tak"}
RERUN_NO = {"", "0", "false", "no", "n", "nein", "non", "falsch", "faux", "falso", "onwaar", "nie", "não", "☐", "-"}
ACTIVE = ("queued", "running")
# Every status the pipeline writes; anything else in the cell was typed by a person.
KNOWN_STATUSES = {"", "invalid", "queued", "running", "done", "failed", "cancelled"}
# Statuses that say the pipeline worked on the row (with the run named in run_id).
PROCESSED = ("queued", "running", "done", "failed", "cancelled")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RERUN_WORDS_MESSAGE = "write yes (or x, ja, oui, sí, TRUE, a ticked box) in rerun"


def now_text() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")


@contextlib.contextmanager
def poller_lock(base: str | Path):
    """Refuse to start while another poller runs (the lock dies with its process)."""
    path = Path(base) / layout.POLLER_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
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
    registered: list[str] = field(default_factory=list)  # rows claimed and started in this poll
    invalid: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # runs going on after this poll
    done: list[str] = field(default_factory=list)  # runs that finished in this poll
    failed: list[str] = field(default_factory=list)
    rows_written: int = 0

    @property
    def active(self) -> bool:
        return bool(self.running)


class Poller:
    def __init__(self, config: dict, *, sheet: Sheet | None = None, executor: Executor | None = None):
        check_data_roots(config)  # before any row is judged by them
        self.config = config
        self.base = Path(config["base_dir"])
        self.sheet = sheet or make_sheet(config)
        self.executor = executor or make_executor(config)
        self.registry = Registry(self.base / layout.STATE_DIR)
        self.runs = RunFiles(self.base)

    # -- validation -------------------------------------------------------------
    def _validate(self, row: Row, rows: list[Row], registered: dict[str, Recording]) -> Recording:
        rec_id = check_name(row.get("recording_id", ""), "recording id")
        animal = check_name(row.get("animal", ""), "animal")
        raw = resolve_raw_path(row.get("raw_path", ""), self.config["data_roots"])
        same_id = [r for r in rows if (r.get("recording_id") or "").strip() == rec_id]
        if len({row_key(r) for r in same_id}) > 1:
            old = registered.get(rec_id)
            if not old or old.raw_path != str(raw) or old.animal != animal:
                raise RowError(f"The recording id '{rec_id}' is used by more than one row. "
                               "Please give each recording its own id.")
        model = check_model_cell(row.get("sleep_model", ""), self.config)
        tracking = resolve_tracking_file(row.get("tracking", ""), raw, self.config["data_roots"])
        return Recording(rec_id, animal, str(raw), notes=(row.get("notes") or "").strip(), source="sheet",
                         sleep_model=model, tracking=tracking)

    # -- one poll -----------------------------------------------------------------
    def poll_once(self) -> PollReport:
        report = PollReport()
        rows = self.sheet.read_rows()
        registered = self.registry.read()
        updates: list[Update] = []
        told: list[Run] = []  # runs the sheet is told of by this poll's write
        for row in rows:
            key = row_key(row)
            try:
                values = self._poll_row(row, rows, registered, report, told)
            except Exception as e:  # noqa: BLE001 - one row's bug must not stop every other row
                words = os_error_words(e) if isinstance(e, OSError) else None  # a full disk ...: no bug
                log.exception("%s while polling the row of %r", "error" if words else "internal error", key[0][:60])
                values = {"status": "failed", "message": words[:1].upper() + words[1:] if words else
                          "An internal error stopped this row; please tell a maintainer (details in the poller's log)."}
                report.failed.append(key[0] or "(no id)")
                if all((row.get(c) or "") == v for c, v in values.items()):
                    values = None
                else:
                    values["updated"] = now_text()
            if values:
                updates.append((key, values))
        report.rows_written += self.sheet.apply_updates(updates)
        for run in told:
            if not run.acknowledged:
                run.acknowledged = True
                self.runs.save(run)
        return report

    def _poll_row(self, row: Row, rows: list[Row], registered: dict[str, Recording], report: PollReport,
                  told: list[Run]) -> dict | None:
        """What this poll writes into one row (None: nothing), starting its run if it is new."""
        key = row_key(row)
        status = (row.get("status") or "").strip().lower()
        rerun_cell = (row.get("rerun") or "").strip()
        rerun = rerun_cell.lower() in RERUN_YES
        if status not in KNOWN_STATUSES:
            # A word typed by a person (`new`, `todo`, `please run`): a request to process a
            # row the pipeline has not processed; for one it has, say what it understands.
            old = registered.get(key[0])
            if old and not rerun and old.raw_path == self._raw_path_or_none(row) and \
                    old.animal == (row.get("animal") or "").strip():
                return self._changed(row, {"message": f"The status {status!r} was typed by hand; the pipeline fills "
                                                      f"in status itself. To process this row again, "
                                                      f"{RERUN_WORDS_MESSAGE}."})
            status = ""
        if rerun_cell.lower() not in RERUN_YES | RERUN_NO and status in ("done", "failed", "cancelled"):
            return self._changed(row, {"message": f"The rerun cell says {rerun_cell[:40]!r}, which the pipeline does "
                                                  f"not understand: to process this row again, {RERUN_WORDS_MESSAGE}; "
                                                  "otherwise leave it empty."})
        if status in PROCESSED and key[0] not in registered and not rerun:
            other = self._run_of_another_recording(row, key[0])
            if other is not None and any((r.get("recording_id") or "").strip() == other for r in rows):
                status = ""  # a copy of another row given an id of its own: new, whatever its copied cells say
            elif other is not None:  # the id of a processed row was changed
                return self._changed(row, {"results_link": "", "message": (
                    f"The recording id changed since this row was processed (as '{other}'); tick rerun to process "
                    "the new data.")})
        if status in ("", "invalid") or rerun:
            try:
                rec = self._validate(row, rows, registered)
                old = registered.get(rec.recording_id)
                if old and (old.raw_path != rec.raw_path or old.animal != rec.animal):
                    if not self._is_row_of(row, old, status):
                        # Another recording's id: its rerun would replace that recording's results.
                        raise RowError(id_taken_message(rec.recording_id, old))
                    if not rerun:
                        raise RowError(self._changed_words(row, old))
            except RowError as e:
                report.invalid.append(key[0] or "(no id)")
                msg = str(e)
                if status == "invalid" and row.get("message") == msg and not rerun:
                    return None
                return {"status": "invalid", "message": msg, "progress": "", "updated": now_text()} | (
                    {"rerun": ""} if rerun else {})
            run = self._unacknowledged_run(old, rec)
            if run is None:
                previous = self.runs.load(old.run_id) if old else None
                if previous is not None and self.executor.is_running(previous):
                    # One run at a time per recording: this one starts once the other is gone.
                    self.executor.stop(previous)
                    self.runs.save(previous)
                    report.running.append(rec.recording_id)
                    return self._changed(row, {"status": "queued", "progress": "",
                                               "message": "Stopping the run that was going on; this one starts next."})
                changed = old is not None and (old.raw_path != rec.raw_path or old.animal != rec.animal)
                # A new sleep model or tracking file alone scores again from the kept LFP and
                # spectrograms: the model is an input of classify, the tracking file of head
                # speed (an input of classify), so Snakemake redoes only what they affect.
                new_choice = old is not None and not changed and (
                    not same_model(rec.sleep_model, old.sleep_model, self.config) or rec.tracking != old.tracking)
                run = self._claim(rec, rerun=rerun, force=(rerun and status != "failed" and not new_choice) or changed)
                report.registered.append(rec.recording_id)
            registered[rec.recording_id] = rec
            told.append(run)
            # A new run's row shows no link until it publishes (a copied row's link is another's).
            fresh = {"run_id": run.run_id, "rerun": "", "results_link": ""}
            waiting = self._start_unless_started(run, report)
            return fresh | (waiting or self._row_state(rec.recording_id, run, row, report, force=True))
        if status in ACTIVE:
            rec = registered.get(key[0])
            if rec is None:  # copied from another row, or a registry that is gone
                return self._never_processed(row, status)
            run = self.runs.load(rec.run_id) or self.runs.load(row.get("run_id") or "")
            if run is None:  # claimed, but the poller stopped before the run file was written
                run = self._claim(rec, rerun=False, run_id=rec.run_id)
            if run.run_id == row.get("run_id"):
                told.append(run)  # the sheet knows this run
            waiting = self._start_unless_started(run, report)
            if waiting:
                return self._changed(row, waiting)
            state = recording_state(self.base, rec.recording_id, run, self.executor)
            if state.state == "failed" and state.temporary:
                # Google (or another back-end) could not be reached: go on from what is complete.
                run = self._claim(rec, rerun=False)
                told.append(run)
                waiting = self._start_unless_started(run, report)
                report.running.append(rec.recording_id)
                return self._changed(row, waiting or {"status": "running", "run_id": run.run_id,
                                                      "message": f"{state.message} Starting again."})
            return self._row_state(rec.recording_id, run, row, report, state=state) or None
        if status in ("done", "failed"):
            rec = registered.get(key[0])
            if rec is None:
                return self._never_processed(row, status)
            return self._changed_since_processed(row, rec, status)
        return None

    def _run_of_another_recording(self, row: Row, rec_id: str) -> str | None:
        """The recording whose run the row's run_id cell names, when that is not `rec_id`
        (the row was copied from another one, or its id was changed since)."""
        run_id = (row.get("run_id") or "").strip()
        run = self.runs.load(run_id) if _RUN_ID.match(run_id) else None
        if run is None or rec_id in run.recordings or not run.recordings:
            return None
        return run.recordings[0]

    @staticmethod
    def _is_row_of(row: Row, rec: Recording, status: str) -> bool:
        """Whether `row` is the row `rec` was processed from (then it may replace it): its
        run_id cell names rec's run. A sheet without run ids can only say so by its status."""
        cell = (row.get("run_id") or "").strip()
        if cell:
            return cell == rec.run_id
        return status in PROCESSED

    def _raw_path_or_none(self, row: Row) -> str | None:
        try:
            return str(resolve_raw_path(row.get("raw_path", ""), self.config["data_roots"]))
        except RowError:
            return None

    def _never_processed(self, row: Row, status: str) -> dict | None:
        """A row whose status says the pipeline worked on it, which it has no record of
        (a row copied with its status, or a registry that was removed): say so."""
        values = {"message": f"This row says {status!r}, but the pipeline has no record of processing it (copied "
                             f"from another row?). To process it, {RERUN_WORDS_MESSAGE}, or empty the status cell."}
        if not RecordingPaths((row.get("recording_id") or "").strip(), self.base).published.exists():
            values["results_link"] = ""  # whatever link it has is not this row's
        return self._changed(row, values)

    def _changed_since_processed(self, row: Row, rec: Recording, status: str) -> dict | None:
        """A processed row whose animal or raw_path was changed since: say so; a row that
        is not the one processed (its id re-used) is told to take another id."""
        if self._raw_path_or_none(row) == rec.raw_path and (row.get("animal") or "").strip() == rec.animal:
            same_tracking = self._same_tracking(row, rec)
            same_choice = same_model(row.get("sleep_model", ""), rec.sleep_model, self.config)
            if same_choice and same_tracking:
                return None
            # A model or tracking file that cannot be chosen is said now, not after the rerun is ticked.
            try:
                if not same_choice:
                    check_model_cell(row.get("sleep_model", ""), self.config)
            except RowError as e:
                return self._changed(row, {"message": f"{e} (The results are still those of the earlier model.)"})
            try:
                if not same_tracking:
                    resolve_tracking_file(row.get("tracking", ""), rec.raw_path, self.config["data_roots"])
            except RowError as e:
                return self._changed(row, {"message": f"{e} (The results are still those of the earlier tracking file.)"})
            return self._changed(row, {"message": self._changed_words(row, rec)})
        if not self._is_row_of(row, rec, status):
            return self._changed(row, {"status": "invalid", "progress": "", "results_link": "",
                                       "message": id_taken_message(rec.recording_id, rec)})
        return self._changed(row, {"message": self._changed_words(row, rec)})

    def _changed_words(self, row: Row, rec: Recording) -> str:
        what = [name for name, same in (("animal", (row.get("animal") or "").strip() == rec.animal),
                                        ("raw_path", self._raw_path_or_none(row) == rec.raw_path)) if not same]
        new_model = not same_model(row.get("sleep_model", ""), rec.sleep_model, self.config)
        if not what and not self._same_tracking(row, rec):
            return (f"The {'sleep model and ' if new_model else ''}tracking file changed since this row was processed; "
                    "tick rerun to compute head speed and score it again (the LFP and spectrograms are kept).")
        if not what and new_model:
            return ("The sleep model changed since this row was processed; tick rerun to score it again with the new "
                    "model (the LFP and spectrograms are kept).")
        return (f"The {' and '.join(what) or 'row'} changed since it was processed; tick rerun to process the new "
                "data.")

    @staticmethod
    def _same_tracking(row: Row, rec: Recording) -> bool:
        """Whether the row's tracking cell still names the file the recording was
        registered with (links resolved; whether it is still there is not asked)."""
        return tracking_cell_path(row.get("tracking", ""), rec.raw_path) == rec.tracking

    @staticmethod
    def _changed(row: Row, values: dict) -> dict | None:
        if all((row.get(c) or "") == v for c, v in values.items()):
            return None
        return values | {"updated": now_text()}

    def _unacknowledged_run(self, old: Recording | None, rec: Recording) -> Run | None:
        """A run started for this very row by a poll whose sheet write never happened."""
        if old is None or old.raw_path != rec.raw_path or old.animal != rec.animal or \
                old.sleep_model != rec.sleep_model or old.tracking != rec.tracking:
            return None
        run = self.runs.load(old.run_id)
        if run is None or run.acknowledged:
            return None
        log.info("%s: adopting run %s, claimed by a poll that could not tell the sheet", rec.recording_id, run.run_id)
        rec.run_id = run.run_id
        return run

    def _claim(self, rec: Recording, *, rerun: bool, force: bool = False, run_id: str | None = None) -> Run:
        """Register `rec` and write its run file: the claim is on disk before the run starts.

        `force` makes the run start again from the raw files (a rerun of a row that was
        done, or of changed data), with the earlier run's outputs and logs set aside, so
        that nothing of them is counted, scored or published with the new; otherwise
        Snakemake resumes from the outputs that are complete.
        """
        rec.run_id = run_id or new_run_id()
        if force:
            set_aside_outputs(self.base, rec.recording_id)
        self.registry.add(rec, replace=True)
        paths = RecordingPaths(rec.recording_id)
        run = Run(run_id=rec.run_id, recordings=[rec.recording_id], targets=[str(paths.published)],
                  forcerun=[str(paths.recording_json)] if force else [], created_at=now_iso())
        if rerun:
            # Not published until this run publishes again.
            with contextlib.suppress(FileNotFoundError):
                (self.base / paths.published).unlink()
        self.runs.save(run)
        return run

    def _start_unless_started(self, run: Run, report: PollReport) -> dict | None:
        """Start a claimed run that has not started; if the executor cannot start it now,
        the row's cells saying so (the run stays claimed, and the next poll tries again)."""
        if run.started_at:
            return None
        try:
            self.executor.start(run)
        except BackendUnavailable as e:
            log.warning("%s: %s", ", ".join(run.recordings), e)
            report.running.extend(r for r in run.recordings if r not in report.running)
            return {"status": "queued", "progress": "", "message": f"Waiting to start: {e}"}
        except ConfigError as e:  # refused for good (a partition that does not exist ...): not again
            log.error("%s: %s", ", ".join(run.recordings), e)
            report.failed.extend(run.recordings)
            return {"status": "failed", "progress": "", "message": str(e)}
        self.runs.save(run)
        log.info("%s: started run %s (%s executor, log %s)", ", ".join(run.recordings), run.run_id, run.backend,
                 run.log)
        return None

    def _row_state(self, rec_id: str, run: Run, row: Row, report: PollReport, *, force: bool = False,
                   state=None) -> dict:
        """The pipeline cells of a row whose run is `run`; {} when nothing changed (and not `force`)."""
        st = state or recording_state(self.base, rec_id, run, self.executor)
        if st.state in ("running", "queued"):
            report.running.append(rec_id)
            values = {"status": st.state, "progress": st.progress, "message": ""}
        elif st.state == "cancelled":
            values = {"status": "cancelled", "progress": st.progress, "message": st.message}
        elif st.state == "done":
            report.done.append(rec_id)
            values = {"status": "done", "progress": "100%", "message": st.message, "results_link": st.link}
        else:
            report.failed.append(rec_id)
            values = {"status": "failed", "progress": st.progress, "message": st.message}
        if force:
            return values | {"updated": now_text()}
        return self._changed(row, values) or {}


def set_aside_outputs(base: Path, rec_id: str) -> Path | None:
    """Move the outputs and logs of a recording's earlier run to state/set-aside/REC/
    (replacing what an earlier rerun put there); None when there was nothing."""
    paths = RecordingPaths(rec_id, base)
    present = [p for p in (paths.results, paths.logs) if p.exists()]
    if not present:
        return None
    dest = base / layout.SET_ASIDE_DIR.format(rec=rec_id)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in present:
        os.rename(p, dest / p.parent.name)  # results/REC -> set-aside/REC/results, logs/REC -> .../logs
    log.info("%s: outputs of the earlier run set aside in %s", rec_id, dest.relative_to(base))
    return dest


def poll_until_settled(poller_factory, *, every_s: float = 2.0, on_poll=None) -> PollReport:
    """Poll until no run is going on; returns a report of everything that happened."""
    total = PollReport()
    while True:
        try:
            report = poller_factory().poll_once()
        except BackendUnavailable as e:
            log.warning("%s", e)
            time.sleep(every_s)
            continue
        for name in ("registered", "invalid", "done", "failed"):
            getattr(total, name).extend(x for x in getattr(report, name) if x not in getattr(total, name))
        total.rows_written += report.rows_written
        total.running = report.running
        if on_poll:
            on_poll(report)
        if not report.active:
            return total
        time.sleep(every_s)


def poll_forever(poller_factory, interval_s: float) -> None:
    """Poll every `interval_s` until SIGTERM or SIGINT (Ctrl-C), which end it after the
    poll going on. A back-end that cannot be reached, or any other failure of one poll,
    is logged in one sentence and tried again."""
    stop = {"now": False}

    def _stop(signum, frame):
        stop["now"] = True
        log.info("stopping after this poll")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop["now"]:
        try:
            report = poller_factory().poll_once()
            log.info("poll: %d started, %d invalid, %d running, %d done, %d failed", len(report.registered),
                     len(report.invalid), len(report.running), len(report.done), len(report.failed))
        except BackendUnavailable as e:
            log.warning("%s", e)
        except PipelineError as e:
            log.error("%s", e)
        except Exception:  # noqa: BLE001 - a bug in one poll must not stop the service
            log.exception("internal error during a poll; trying again at the next one")
        deadline = time.monotonic() + interval_s
        while not stop["now"] and time.monotonic() < deadline:
            time.sleep(0.1)
