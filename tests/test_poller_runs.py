"""The poller's bookkeeping, with a stand-in workflow (tests/fake_workflow.py) run by the
real local executor: polls that never wait, runs found again from their run files,
failures told in words, nothing started twice. Each poll is an `ephys poll --once` run in
this process (CommandPoll). The real workflow is in test_poller.py."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import tree_checksums
from fake_workflow import FakeWorkflowExecutor
from pipeline.config import load_config
from pipeline.errors import BackendUnavailable
from pipeline.executor import RunFiles
from pipeline.poller import Poller, poll_forever
from pipeline.sheets.local_csv import LocalCsvSheet


@pytest.fixture
def setup(project):
    """(config, make_poller(scenarios), read rows by id) for a project with two raw folders."""
    for name in ("rec1", "rec2"):
        (project.raw / name).mkdir()
    cfg = load_config(project.config_path)
    executors = []

    def make_poller(scenarios=None, sheet=None):
        ex = FakeWorkflowExecutor(cfg, scenarios)
        executors.append(ex)
        if sheet is not None:  # a sheet standing in for a failing back-end: the poller itself
            return Poller(cfg, executor=ex, sheet=sheet)
        return CommandPoll(project.config_path, ex)

    def rows():
        return {r["recording_id"]: r for r in project.read_sheet()}

    yield cfg, make_poller, rows
    # Leave no stand-in workflow running behind the test.
    for run_file in (project.dir / "state" / "runs").glob("*.json"):
        run = RunFiles(project.dir).load(run_file.stem)
        if run and executors:
            executors[0].stop(run, grace_s=1)


class CommandPoll:
    """One `ephys poll --once`, run in this process (pipeline.cli.main) so that everything
    a lab's poll goes through (its command line, the config file, the poller lock, its log
    file, its exit code) is exercised; only the workflow is the stand-in. poll_once()
    returns the poll's report, as Poller.poll_once does."""

    def __init__(self, config_path, executor):
        self.config_path, self.executor = config_path, executor

    def poll_once(self):
        import pipeline.poller
        from pipeline import cli

        reports, executor = [], self.executor

        class StandInWorkflow(Poller):
            def __init__(self, config, **kw):
                super().__init__(config, executor=executor, **kw)

            def poll_once(self):
                reports.append(super().poll_once())
                return reports[-1]

        handlers = list(logging.getLogger().handlers)
        real = pipeline.poller.Poller
        pipeline.poller.Poller = StandInWorkflow
        try:
            code = cli.main(["--config", str(self.config_path), "poll", "--once"])
        finally:
            pipeline.poller.Poller = real
            for h in logging.getLogger().handlers:
                if h not in handlers:  # the poller's log file, added by each command
                    logging.getLogger().removeHandler(h)
                    h.close()
        assert reports, f"`ephys poll --once` stopped before polling (exit {code})"
        assert code == (1 if reports[-1].failed else 0), code
        return reports[-1]


def wait_for(predicate, timeout=30.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def settle(make_poller, scenarios=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = make_poller(scenarios).poll_once()
        if not report.active:
            return report
        time.sleep(0.1)
    pytest.fail("the runs never finished")


def test_a_poll_returns_at_once_and_the_next_poll_starts_a_row_added_meanwhile(project, setup):
    cfg, make_poller, rows = setup
    slow = {"rec1": {"slow": {"convert": 0.3}, "segments": 10}}
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1", "notes": "first"}])
    t0 = time.monotonic()
    report = make_poller(slow).poll_once()
    assert time.monotonic() - t0 < 3, "a poll must not wait for the run"
    assert report.registered == ["rec1"] and report.running == ["rec1"]
    row = rows()["rec1"]
    assert row["status"] == "running" and row["run_id"], row
    # While it converts, a person adds a row above it; the next poll starts that one too.
    wait_for(lambda: (project.dir / "results/rec1/lfp/seg0.fif").exists(), what="conversion to start")
    project.write_sheet([{"recording_id": "rec2", "animal": "m2", "raw_path": "rec2"}, rows()["rec1"]])
    t0 = time.monotonic()
    report = make_poller(slow).poll_once()
    assert time.monotonic() - t0 < 3
    assert report.registered == ["rec2"] and sorted(report.running) == ["rec1", "rec2"]
    now = rows()
    assert now["rec1"]["status"] == "running"
    assert "Converting to LFP (" in now["rec1"]["progress"], now["rec1"]
    assert now["rec2"]["status"] == "running"
    assert len(list((project.dir / "state" / "runs").glob("*.json"))) == 2
    settle(make_poller, slow)
    final = rows()
    assert [r["recording_id"] for r in project.read_sheet()] == ["rec2", "rec1"]
    for rec in ("rec1", "rec2"):
        assert final[rec]["status"] == "done", final[rec]
        assert final[rec]["message"].startswith("Finished: 6 files published")
    assert final["rec1"]["notes"] == "first"


def test_polls_while_nothing_changes_leave_the_sheet_alone(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    make_poller({"rec1": {"hang_at": "convert"}}).poll_once()
    wait_for(lambda: (project.dir / "results/rec1/recording.json").exists(), what="inspect")
    make_poller().poll_once()  # progress moves to "Converting": one write
    before = project.sheet.read_bytes()
    for _ in range(3):
        report = make_poller().poll_once()
        assert report.rows_written == 0 and report.running == ["rec1"]
    assert project.sheet.read_bytes() == before
    assert len(list((project.dir / "state" / "runs").glob("*.json"))) == 1, "nothing is started twice"


def test_a_failed_stage_is_told_in_its_own_words(project, setup):
    cfg, make_poller, rows = setup
    scenario = {"rec1": {"fail_at": "spectrogram", "error": "no good channel in any region"}}
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    report = settle(make_poller, scenario)
    assert report.failed == ["rec1"]
    row = rows()["rec1"]
    assert row["status"] == "failed"
    assert row["message"] == ("Computing spectrograms failed: no good channel in any region "
                              "(log: logs/rec1/spectrogram/seg0.log)")
    assert row["progress"].endswith("Computing spectrograms (0/3 segments)")


def test_a_run_stopped_by_an_unreachable_back_end_starts_again_by_itself(project, setup):
    cfg, make_poller, rows = setup
    error = ("(temporary) Google could not be reached for uploading report.pdf (HTTP 503, 4 attempt(s) in 2 s); "
             "it is tried again at the next poll.")
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    make_poller({"rec1": {"fail_at": "publish", "error": error}}).poll_once()
    first = rows()["rec1"]["run_id"]
    wait_for(lambda: not FakeWorkflowExecutor(cfg).is_running(RunFiles(project.dir).load(first)), what="the run")
    report = make_poller().poll_once()
    row = rows()["rec1"]
    assert report.running == ["rec1"] and row["status"] == "running" and row["run_id"] != first
    assert row["message"] == ("Publishing results failed: Google could not be reached for uploading report.pdf "
                              "(HTTP 503, 4 attempt(s) in 2 s); it is tried again at the next poll. "
                              "(log: logs/rec1/publish.log) Starting again.")
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"


PIPELINE_CELLS = ("status", "progress", "message", "results_link", "updated", "run_id")


def published(project, animal, rec):
    return tree_checksums(project.dir / "published" / animal / rec)


def test_a_changed_done_row_is_flagged_and_its_rerun_replaces_the_old_outputs_as_a_whole(project, setup):
    cfg, make_poller, rows = setup
    (project.raw / "rec3").mkdir()
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"},
                         {"recording_id": "other", "animal": "m1", "raw_path": "rec3", "notes": "a neighbour"}])
    settle(make_poller, {"rec1": {"segments": 5}})
    assert rows()["rec1"]["status"] == "done"
    other_row, other_files = rows()["other"], published(project, "m1", "other")
    project.edit_row(0, raw_path="rec2")
    report = make_poller().poll_once()
    assert report.registered == [], "a changed done row is not processed again without a word"
    row = rows()["rec1"]
    assert row["status"] == "done"
    assert row["message"] == "The raw_path changed since it was processed; tick rerun to process the new data."
    # The rerun starts afresh: the old data's five segments are set aside, not counted beside the new two.
    project.edit_row(0, rerun="yes")
    slow = {"rec1": {"segments": 2, "slow": {"spectrogram": 1.0}}}
    make_poller(slow).poll_once()
    results = project.dir / "results" / "rec1"
    wait_for(lambda: (results / "lfp" / "seg1.fif").exists(), what="the new conversion")
    make_poller(slow).poll_once()
    assert sorted(p.name for p in (results / "lfp").iterdir()) == ["seg0.fif", "seg1.fif"]
    assert rows()["rec1"]["progress"].endswith("Computing spectrograms (0/2 segments)")
    aside = project.dir / "state" / "set-aside" / "rec1"
    assert len(list((aside / "results" / "lfp").glob("seg*.fif"))) == 5, "the old outputs are kept aside"
    settle(make_poller, slow)
    row = rows()["rec1"]
    assert row["status"] == "done" and row["message"].startswith("Finished") and row["results_link"]
    assert sorted(p.name for p in (results / "spectrogram").iterdir()) == ["seg0.npz", "seg1.npz"]
    assert rows()["other"] == other_row and published(project, "m1", "other") == other_files


def test_a_done_row_whose_id_was_changed_is_flagged_and_shows_no_other_s_link(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    settle(make_poller)
    project.edit_row(0, recording_id="rec1-day2")
    report = make_poller().poll_once()
    assert report.registered == []
    row = rows()["rec1-day2"]
    assert row["message"] == ("The recording id changed since this row was processed (as 'rec1'); tick rerun to "
                              "process the new data.")
    assert row["results_link"] == ""
    project.edit_row(0, rerun="yes")
    settle(make_poller)
    row = rows()["rec1-day2"]
    assert row["status"] == "done" and row["results_link"].endswith("/published/m1/rec1-day2")
    assert (project.dir / "published" / "m1" / "rec1").is_dir(), "the old id's results stay"


def test_a_copy_of_a_done_row_with_its_own_id_and_folder_is_processed_as_new(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1", "notes": "day 1"}])
    settle(make_poller)
    original, files = rows()["rec1"], published(project, "m1", "rec1")
    # A person copies the whole row, pipeline cells and all, and types a new id and folder.
    project.write_sheet([original, {**original, "recording_id": "rec2", "raw_path": "rec2", "notes": "day 2"}])
    report = make_poller().poll_once()
    assert report.registered == ["rec2"]
    row = rows()["rec2"]
    assert row["status"] == "running" and row["results_link"] == "" and row["run_id"] != original["run_id"]
    settle(make_poller)
    row = rows()["rec2"]
    assert row["status"] == "done" and row["results_link"].endswith("/published/m1/rec2")
    assert rows()["rec1"] == original and published(project, "m1", "rec1") == files


def test_a_re_used_id_is_told_to_take_another_and_rerun_never_replaces_the_other_s_results(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    settle(make_poller)
    files = published(project, "m1", "rec1")
    # The row is deleted; later someone adds a new recording under the same id.
    project.write_sheet([{"recording_id": "rec1", "animal": "m2", "raw_path": "rec2", "notes": "new mouse"}])
    taken = ("The recording id 'rec1' is already used for another recording (animal m1, raw folder rec1), whose "
             "results are kept. Please give this row a different id.")
    report = make_poller().poll_once()
    assert report.invalid == ["rec1"] and report.registered == []
    row = rows()["rec1"]
    assert row["status"] == "invalid" and row["message"] == taken
    project.edit_row(0, rerun="yes")
    report = make_poller().poll_once()
    assert report.registered == [], "rerun must not replace another recording's results"
    row = rows()["rec1"]
    assert row["status"] == "invalid" and row["message"] == taken and row["rerun"] == ""
    # The same with a copied `done` row of another recording re-using the id.
    (project.raw / "rec3").mkdir()
    project.write_sheet([{"recording_id": "x", "animal": "m1", "raw_path": "rec3"}])
    settle(make_poller)
    copied = {**rows()["x"], "recording_id": "rec1", "animal": "m2", "raw_path": "rec2"}
    project.write_sheet([rows()["x"], copied])
    make_poller().poll_once()
    assert rows()["rec1"]["status"] == "invalid" and rows()["rec1"]["message"] == taken
    assert rows()["rec1"]["results_link"] == ""
    assert published(project, "m1", "rec1") == files and not (project.dir / "published" / "m2").exists()
    project.edit_row(1, recording_id="rec1-m2")
    settle(make_poller)
    assert rows()["rec1-m2"]["status"] == "done"
    assert published(project, "m1", "rec1") == files


def test_an_animal_change_moves_the_recording_to_the_new_animal_s_folder(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"},
                         {"recording_id": "rec2", "animal": "m1", "raw_path": "rec2"}])
    settle(make_poller)
    files = published(project, "m1", "rec2")
    note = project.dir / "published" / "m1" / "rec1" / "PI notes.txt"
    note.write_text("look at hour 3")
    project.edit_row(0, animal="m2")
    make_poller().poll_once()
    assert rows()["rec1"]["message"] == "The animal changed since it was processed; tick rerun to process the new data."
    project.edit_row(0, rerun="yes")
    settle(make_poller)
    row = rows()["rec1"]
    assert row["status"] == "done" and row["results_link"].endswith("/published/m2/rec1")
    assert sorted(p.name for p in (project.dir / "published" / "m1" / "rec1").iterdir()) == ["PI notes.txt"], \
        "the pipeline's files leave the old animal's folder; the PI's own stay"
    assert published(project, "m1", "rec2") == files
    assert (project.dir / "published" / "m2" / "rec1" / "report.pdf").exists()


def test_a_publish_that_fails_half_way_leaves_the_previous_results_whole(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    settle(make_poller)
    folder = project.dir / "published" / "m1" / "rec1"
    (folder / "PI notes.txt").write_text("look at hour 3")
    before = tree_checksums(folder)
    project.edit_row(0, rerun="yes")
    settle(make_poller, {"rec1": {"lose_before_publish": ["report"]}})
    row = rows()["rec1"]
    assert row["status"] == "failed"
    assert row["message"] == (f"Publishing results failed: report.pdf could not be copied into the results folder "
                              f"{folder} (No such file or directory); the results published before are unchanged. "
                              "(log: logs/rec1/publish.log)")
    assert tree_checksums(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["rec1"], "no half-made folder is left beside it"
    project.edit_row(0, rerun="yes")
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"
    assert tree_checksums(folder) == before, "published again whole, with the PI's notes"


def test_an_internal_error_names_its_log(project, setup):
    cfg, make_poller, rows = setup
    error = "internal error in `ephys classify` (KeyError: 'x'); please tell a maintainer."
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    settle(make_poller, {"rec1": {"fail_at": "classify", "error": error}})
    message = rows()["rec1"]["message"]
    assert message == f"Scoring sleep states failed: {error} (log: logs/rec1/classify.log)"


def test_a_run_killed_whole_is_started_again_by_the_next_poll(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    make_poller({"rec1": {"hang_at": "features"}}).poll_once()
    wait_for(lambda: (project.dir / "results/rec1/spectrogram/seg2.npz").exists(), what="spectrograms")
    run_id = rows()["rec1"]["run_id"]
    run = RunFiles(project.dir).load(run_id)
    os.killpg(run.pid, signal.SIGKILL)  # power loss, or kill -9 of the run: the workflow and its jobs at once
    wait_for(lambda: not FakeWorkflowExecutor(cfg).is_running(run), what="the run to die")
    report = make_poller().poll_once()
    assert report.failed == [] and report.running == ["rec1"]
    row = rows()["rec1"]
    assert row["status"] == "running" and row["run_id"] != run_id
    assert row["message"] == ("The workflow was killed before it finished (the machine stopped, out of memory, or "
                              "someone stopped it); what was complete is kept. Starting again.")
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"


def test_a_job_the_system_killed_is_told_and_rerun_goes_on(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    settle(make_poller, {"rec1": {"killed_at": "convert"}})
    row = rows()["rec1"]
    assert row["status"] == "failed"
    assert row["message"] == ("Converting to LFP failed: the job was killed (out of memory, or stopped by someone); "
                              "tick rerun to go on from where it stopped (log: logs/rec1/convert/seg0.log).")
    project.edit_row(0, rerun="yes")
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"


def test_rerun_replaces_published_files_without_duplicates(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    settle(make_poller)
    first = project.read_sheet()[0]
    assert first["status"] == "done"
    folder = project.dir / "published" / "m1" / "rec1"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["architecture.png", "channel_qc.png", "hypnogram.tsv", "overview.png", "provenance.json",
                     "report.pdf"]
    project.edit_row(0, rerun="yes")
    settle(make_poller)
    second = project.read_sheet()[0]
    assert second["status"] == "done" and second["rerun"] == ""
    assert second["run_id"] != first["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == names


def test_a_fixed_invalid_row_is_picked_up_by_the_next_poll(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "missing", "animal": "m1", "raw_path": "does-not-exist"}])
    report = make_poller().poll_once()
    assert report.invalid == ["missing"] and rows()["missing"]["status"] == "invalid"
    project.edit_row(0, raw_path="rec1", recording_id="missing-fixed")
    settle(make_poller)
    assert rows()["missing-fixed"]["status"] == "done"


def test_a_cell_the_file_system_refuses_is_that_row_s_problem_only(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "long", "animal": "m1", "raw_path": "x" * 300},
                         {"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    report = make_poller().poll_once()
    assert report.invalid == ["long"] and report.registered == ["rec1"]
    assert rows()["long"]["status"] == "invalid"
    assert "cannot be used (File name too long)" in rows()["long"]["message"]
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"


def test_rerun_while_running_stops_the_old_run_first(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    make_poller({"rec1": {"hang_at": "convert"}}).poll_once()
    first = RunFiles(project.dir).load(rows()["rec1"]["run_id"])
    project.edit_row(0, rerun="TRUE")
    t0 = time.monotonic()
    make_poller().poll_once()
    assert time.monotonic() - t0 < 3, "the poll asks the old run to stop, it does not wait for it"
    row = rows()["rec1"]
    assert row["status"] == "queued" and row["rerun"] == "TRUE" and row["run_id"] == first.run_id
    assert row["message"] == "Stopping the run that was going on; this one starts next."
    wait_for(lambda: not FakeWorkflowExecutor(cfg).is_running(first), what="the old run to stop")
    report = make_poller().poll_once()
    assert report.registered == ["rec1"] and rows()["rec1"]["run_id"] != first.run_id
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"


class UnwritableSheet(LocalCsvSheet):
    """A sheet that can be read but not written: the poller dies before telling it."""

    def apply_updates(self, updates, **kw):
        raise BackendUnavailable("the sheet cannot be written just now")


def test_a_run_the_sheet_never_heard_of_is_adopted_not_started_again(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    with pytest.raises(BackendUnavailable):
        make_poller({"rec1": {"step_s": 0.2}}, sheet=UnwritableSheet(project.sheet)).poll_once()
    assert rows()["rec1"]["status"] == ""  # the claim never reached the sheet ...
    runs = list((project.dir / "state" / "runs").glob("*.json"))
    assert len(runs) == 1  # ... but the run was claimed on disk and started
    report = make_poller().poll_once()
    assert report.registered == [], "the next poll must adopt the run, not start another"
    assert rows()["rec1"]["run_id"] == runs[0].stem
    assert list((project.dir / "state" / "runs").glob("*.json")) == runs
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done"


def test_a_run_that_could_not_start_waits_claimed_and_the_next_poll_starts_it(project, setup):
    cfg, make_poller, rows = setup

    class CannotStart(FakeWorkflowExecutor):
        def start(self, run):
            raise BackendUnavailable("the machine has no process to spare just now")

    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    report = Poller(cfg, executor=CannotStart(cfg)).poll_once()
    assert report.active, "a run waiting to start is still to be watched"
    row = rows()["rec1"]
    assert row["status"] == "queued" and row["run_id"]
    assert row["message"] == "Waiting to start: the machine has no process to spare just now"
    runs = list((project.dir / "state" / "runs").glob("*.json"))
    assert len(runs) == 1 and not RunFiles(project.dir).load(runs[0].stem).started_at
    report = make_poller().poll_once()
    assert report.registered == [] and report.running == ["rec1"]
    assert list((project.dir / "state" / "runs").glob("*.json")) == runs
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done" and rows()["rec1"]["run_id"] == runs[0].stem


def test_status_sees_a_run_started_by_another_process(project, setup):
    cfg, make_poller, rows = setup
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
    make_poller({"rec1": {"hang_at": "convert"}}).poll_once()
    wait_for(lambda: (project.dir / "results/rec1/recording.json").exists(), what="inspect")
    status = json.loads(project.ephys("status", "--json", check=True).stdout)
    assert [(r["recording_id"], r["state"]) for r in status] == [("rec1", "running")]
    assert status[0]["progress"].endswith("Converting to LFP (0/3 segments)")


def poll_in_this_process_until_sigterm(factory, interval_s: float, caplog) -> None:
    """The continuous poller in the test process (its factory sends the SIGTERM)."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with caplog.at_level(logging.INFO, logger="pipeline.poller"):
            poll_forever(factory, interval_s=interval_s)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_continuous_poller_survives_a_busy_sheet(project, caplog):
    calls = []

    class Busy:
        def poll_once(self):
            calls.append(time.monotonic())
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # the service manager stops the poller
            raise BackendUnavailable("the sheet kept changing while the pipeline tried to write to it")

    poll_in_this_process_until_sigterm(Busy, 0.05, caplog)
    assert len(calls) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["the sheet kept changing while the pipeline tried to write to it"] * 3
    assert "stopping after this poll" in caplog.text


def test_the_continuous_poller_runs_a_row_added_while_it_idles(project, setup, caplog):
    cfg, make_poller, rows = setup
    project.write_sheet([])
    seen = []

    def factory():
        seen.append(len(seen))
        if len(seen) == 3:  # a person adds a row while the poller idles
            project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1"}])
        if rows().get("rec1", {}).get("status") == "done":
            os.kill(os.getpid(), signal.SIGTERM)  # the service manager stops it
        return make_poller()

    poll_in_this_process_until_sigterm(factory, 0.1, caplog)
    assert rows()["rec1"]["status"] == "done"
    assert "stopping after this poll" in caplog.text


def test_jobs_of_runs_side_by_side_share_the_configured_cores(tmp_path):
    """Six jobs from different runs, two core slots: never more than two at work at once."""
    script = (
        "import json, sys, time\n"
        "from pipeline.executor.slots import hold_core_slot\n"
        "hold_core_slot(poll_s=0.02)\n"
        "t0 = time.time(); time.sleep(0.4)\n"
        "print(json.dumps([t0, time.time()]))\n"
    )
    env = dict(os.environ, EPHYS_CORE_SLOTS=f"{tmp_path / 'cores'}:2")
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    spans = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    busy = peak = 0
    for _, step in events:
        busy += step
        peak = max(peak, busy)
    assert peak == 2


def test_a_row_s_sleep_model_is_checked_kept_and_a_new_one_only_scores_again(project, setup):
    from conftest import SHEET_COLUMNS, write_tiny_model
    from pipeline.io.registry import Registry

    cfg, make_poller, rows = setup
    write_tiny_model(project.dir / "models" / "lab-2026.json", name="lab-2026")
    columns = SHEET_COLUMNS[:3] + ["sleep_model"] + SHEET_COLUMNS[3:]
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1", "sleep_model": "lab-2026"},
                         {"recording_id": "rec2", "animal": "m1", "raw_path": "rec2", "sleep_model": "lab-2025"}],
                        columns)
    report = settle(make_poller)
    assert report.invalid == ["rec2"] and report.done == ["rec1"]
    assert rows()["rec2"]["message"] == ("The sleep model 'lab-2025' was not found in models/; available: lab-2026, "
                                         "label-free. Please write one of these, or leave the cell empty for the "
                                         "lab's default.")
    registry = Registry(project.dir / "state")
    assert registry.read()["rec1"].sleep_model == "lab-2026" and "rec2" not in registry.read()
    done = rows()["rec1"]
    assert done["status"] == "done"
    # The done row's model is changed: said, not done unasked; a model that is not there is said at once.
    project.edit_row(0, sleep_model="lab-2027")
    make_poller().poll_once()
    assert rows()["rec1"]["message"].startswith("The sleep model 'lab-2027' was not found in models/; available: ")
    assert rows()["rec1"]["message"].endswith("(The results are still those of the earlier model.)")
    project.edit_row(0, sleep_model="Label free")
    report = make_poller().poll_once()
    assert report.registered == [] and rows()["rec1"]["status"] == "done"
    assert rows()["rec1"]["message"] == ("The sleep model changed since this row was processed; tick rerun to score "
                                         "it again with the new model (the LFP and spectrograms are kept).")
    # Its rerun scores again from what is there: nothing is set aside, nothing forced from the raw files.
    project.edit_row(0, rerun="yes")
    report = make_poller().poll_once()
    assert report.registered == ["rec1"]
    run = RunFiles(project.dir).load(rows()["rec1"]["run_id"])
    assert run.forcerun == [] and not (project.dir / "state" / "set-aside" / "rec1").exists()
    assert registry.read()["rec1"].sleep_model == "label-free"
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done" and rows()["rec1"]["message"].startswith("Finished")
    assert rows()["rec2"]["status"] == "invalid"


def test_a_row_s_tracking_file_is_checked_kept_and_a_new_one_only_scores_again(project, setup):
    import numpy as np

    from conftest import SHEET_COLUMNS
    from pipeline.io.registry import Registry
    from test_tracking import track, write_dlc

    cfg, make_poller, rows = setup
    videos = project.raw / "videos"
    videos.mkdir()
    frames = {"nose": track(np.arange(5), np.arange(5))}
    first, second = (write_dlc(videos / name, frames) for name in ("m1DLC.csv", "m1DLC_filtered.csv"))
    write_dlc(project.dir / "m2DLC.csv", frames)  # beside the data root, not in it
    columns = SHEET_COLUMNS[:3] + ["tracking"] + SHEET_COLUMNS[3:]
    project.write_sheet([{"recording_id": "rec1", "animal": "m1", "raw_path": "rec1", "tracking": "../videos/m1DLC.csv"},
                         {"recording_id": "rec2", "animal": "m2", "raw_path": "rec2", "tracking": "../../m2DLC.csv"}],
                        columns)
    report = settle(make_poller)
    assert report.invalid == ["rec2"] and report.done == ["rec1"]
    assert rows()["rec2"]["message"] == (f"The tracking file '../../m2DLC.csv' is outside the folders the pipeline may "
                                         f"read ({project.raw}). Please copy it into one of them and give that path.")
    registry = Registry(project.dir / "state")
    assert registry.read()["rec1"].tracking == str(first) and "rec2" not in registry.read()
    assert rows()["rec1"]["status"] == "done"
    # The same file written another way is no change.
    project.edit_row(0, tracking=str(first))
    assert make_poller().poll_once().rows_written == 0
    # The done row's file is changed: said, not done unasked; a file that is not there is said at once.
    project.edit_row(0, tracking="../videos/m1DLC_filtred.csv")
    make_poller().poll_once()
    assert rows()["rec1"]["message"] == (
        f"The tracking file '../videos/m1DLC_filtred.csv' was not found (looked for it in the raw folder "
        f"{project.raw}/rec1). Please check the spelling and that the file has been copied. (The results are still "
        "those of the earlier tracking file.)")
    project.edit_row(0, tracking="../videos/m1DLC_filtered.csv")
    report = make_poller().poll_once()
    assert report.registered == [] and rows()["rec1"]["status"] == "done"
    assert rows()["rec1"]["message"] == ("The tracking file changed since this row was processed; tick rerun to "
                                         "compute head speed and score it again (the LFP and spectrograms are kept).")
    # Its rerun computes from what is there: nothing is set aside, nothing forced from the raw files.
    project.edit_row(0, rerun="yes")
    report = make_poller().poll_once()
    assert report.registered == ["rec1"]
    run = RunFiles(project.dir).load(rows()["rec1"]["run_id"])
    assert run.forcerun == [] and not (project.dir / "state" / "set-aside" / "rec1").exists()
    assert registry.read()["rec1"].tracking == str(second)
    settle(make_poller)
    assert rows()["rec1"]["status"] == "done" and rows()["rec1"]["message"].startswith("Finished")
    assert rows()["rec2"]["status"] == "invalid"
