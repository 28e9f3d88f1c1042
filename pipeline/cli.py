"""The `ephys` command: every stage by hand, the poller, and the demo.

The Snakemake rules call these same sub-commands, so a stage run by hand and a stage
run by the workflow are one implementation. Expected failures print one line starting
with `ERROR: ` (the poller copies it into the sheet) and exit with status 2; anything
else is a bug, and its line says "internal error ... tell a maintainer" (status 3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

from pipeline import __version__, layout
from pipeline.errors import INTERNAL_ERROR, PipelineError, error_words

log = logging.getLogger("ephys")
# The workflow names its configuration file here for the stage commands it runs, which
# read from it only what changes no output (data_roots); everything else reaches them
# as options, through the rules' params.
CONFIG_ENV = "EPHYS_CONFIG"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for noisy in ("matplotlib", "PIL", "mne", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args) -> dict:
    """The configuration, read and checked once per process (when a command needs it)."""
    if getattr(args, "_cfg", None) is None:
        from pipeline.config import load_config

        args._cfg = load_config(args.config)
    return args._cfg


def parse_duration(text: str) -> float:
    """'30m', '1h', '90s', '1h30m' or plain seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h or 90s")
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)


def _progress_logger(what: str, every_s: float):
    """A progress(done_s, total_s) callback that logs at most every `every_s` seconds."""
    last = {"t": 0.0}

    def progress(done_s, total_s):
        if time.monotonic() - last["t"] > every_s or done_s >= total_s:
            last["t"] = time.monotonic()
            log.info("%s: %.0f%% (%.0f of %.0f s)", what, 100 * done_s / total_s, done_s, total_s)

    return progress


# -- stage commands ------------------------------------------------------------------
def cmd_synth(args) -> int:
    from pipeline.synth import write_synthetic_edf, write_synthetic_recording

    if (args.out_dir is None) == (args.edf is None):
        raise SystemExit("ephys synth: give either OUT_DIR (a Neuralynx folder) or --edf OUT.edf, not both or neither.")
    if args.edf is not None:
        if args.gap:
            raise SystemExit("ephys synth: --gap is for Neuralynx folders; an EDF is written without gaps.")
        hours = args.hours if args.hours is not None else args.duration / 3600.0
        summary = write_synthetic_edf(args.edf, hours=hours, seed=args.seed,
                                      rate=250.0 if args.rate is None else args.rate)
        log.info("wrote %s and %s", summary["edf"], summary["truth"])
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if args.hours is not None:
        args.duration = args.hours * 3600.0
    if args.rate is None:
        args.rate = 32000.0
    gap = None
    if args.gap:
        start, _, length = args.gap.partition(":")
        gap = (parse_duration(start), parse_duration(length))
    summary = write_synthetic_recording(args.out_dir, duration_s=args.duration, n_channels=args.channels,
                                        sampling_rate=args.rate, seed=args.seed, gap=gap,
                                        progress=_progress_logger("synthetic recording", 5))
    log.info("wrote %s", args.out_dir)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _option_or_config(args, option: str, section: str, key: str):
    """An explicit option (what the workflow passes), else the configuration's value."""
    value = getattr(args, option)
    return _config(args)[section][key] if value is None else value


def _channel_map(args) -> dict:
    if args.channel_map is None:
        return _config(args)["channel_maps"]["default"]
    from pipeline.errors import ConfigError

    from pipeline.channels import ChannelMap

    try:
        spec = json.loads(args.channel_map)
        ChannelMap.from_dict(spec)
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"--channel-map is not a JSON channel map ({e}): {args.channel_map[:80]!r}.") from None
    return spec


def _data_roots(args) -> list[str]:
    """The folders raw files must lie in: --data-roots, else data_roots of the configuration
    (in the workflow, the one Snakemake was given: see CONFIG_ENV)."""
    if args.data_roots:
        return [str(Path(r).resolve()) for r in args.data_roots]
    return _config(args)["data_roots"]


def _inspect_settings(args) -> dict:
    """The configuration values inspect uses, from options or the configuration."""
    return {"lfp_rate": float(_option_or_config(args, "lfp_rate", "lfp", "rate")),
            "segment_s": float(_option_or_config(args, "segment_s", "lfp", "segment_s")),
            "default_channel_map": _channel_map(args), "data_roots": _data_roots(args)}


def cmd_inspect(args) -> int:
    from pipeline.convert import inspect_recording

    info = inspect_recording(args.raw_dir, args.out_json, **_inspect_settings(args),
                             recording_id=args.recording_id, animal=args.animal)
    print(f"{len(info.channels)} channels at {info.sampling_rate:g} Hz, {info.duration_s:.1f} s, "
          f"{len(info.segments)} segment(s), {len(info.gaps)} gap(s)")
    return 0


def cmd_convert_segment(args) -> int:
    from pipeline.convert import convert_segment
    from pipeline.io.recording_info import RecordingInfo

    convert_segment(RecordingInfo.load(args.recording_json), args.segment, args.out_fif, qc_json=args.qc,
                    lfp_emg_npz=args.lfp_emg,
                    epoch_s=None if args.lfp_emg is None else float(_option_or_config(args, "epoch_s", "sleep", "epoch_s")),
                    data_roots=_data_roots(args))
    return 0


def cmd_convert(args) -> int:
    """A whole recording, without Snakemake: inspect, then every segment in turn."""
    from pipeline.convert import convert_segment, inspect_recording
    from pipeline.dsp.lfp_emg import usable_band

    out = args.out_dir
    info = inspect_recording(args.raw_dir, layout.output_in(out, "recording_json"), **_inspect_settings(args),
                             recording_id=args.recording_id)
    emg = usable_band(info.lfp_rate) is None  # too low a rate for the spectrogram stage's muscle tone
    for seg in info.segments:
        convert_segment(info, seg.index, layout.output_in(out, "lfp", seg.index),
                        qc_json=layout.output_in(out, "lfp_qc", seg.index),
                        lfp_emg_npz=layout.output_in(out, "lfp_emg", seg.index) if emg else None,
                        epoch_s=float(_config(args)["sleep"]["epoch_s"]), data_roots=_data_roots(args))
    print(f"LFP written to {layout.output_in(out, 'lfp', 0).parent}")
    return 0


def cmd_spectrogram(args) -> int:
    from pipeline.io.recording_info import RecordingInfo
    from pipeline.spectral import compute_spectrogram

    compute_spectrogram(RecordingInfo.load(args.recording_json), args.lfp_fif, args.out_npz,
                        epoch_s=float(_option_or_config(args, "epoch_s", "sleep", "epoch_s")),
                        time_bandwidth=float(_option_or_config(args, "time_bandwidth", "spectrogram", "time_bandwidth")),
                        fmax=float(_option_or_config(args, "fmax", "spectrogram", "fmax")),
                        per_channel=_yes(_option_or_config(args, "per_channel", "spectrogram", "per_channel")),
                        lfp_emg_npz=args.lfp_emg)
    return 0


def _yes(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("yes", "true", "1")


def cmd_features(args) -> int:
    from pipeline.sleep.features import compute_features

    compute_features(args.spectrogram_npz, args.out_tsv)
    return 0


def _tracking_settings(args) -> dict:
    from pipeline.errors import ConfigError

    if args.tracking is None:
        return _config(args)["tracking"]
    try:
        settings = json.loads(args.tracking)
        if not isinstance(settings, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise ConfigError(f"--tracking is not the tracking settings as JSON ({e}): {args.tracking[:80]!r}.") from None
    return settings


def cmd_head_speed(args) -> int:
    from pipeline.io.recording_info import RecordingInfo
    from pipeline.tracking import compute_head_speed

    out_json = args.json or Path(args.out_tsv).with_suffix(".json")
    hs = compute_head_speed(RecordingInfo.load(args.recording_json), args.raw_dir, args.out_tsv, out_json,
                            epoch_s=float(_option_or_config(args, "epoch_s", "sleep", "epoch_s")),
                            settings=_tracking_settings(args), data_roots=_data_roots(args))
    print(f"head speed of {len(hs.onsets)} epochs in {hs.unit}")
    return 0


def _head_speed_features(path: str | None) -> dict:
    if not path:
        return {}
    from pipeline.io.tracking import read_head_speed
    from pipeline.tracking import head_speed_features

    features = head_speed_features(read_head_speed(path))
    log.info("features from the video tracking: %s", ", ".join(features))
    return features


def _outputs(args, names: list[str]) -> dict[str, Path]:
    """Output paths from their options, or named as in the layout inside --out-dir."""
    out = {}
    for name in names:
        value = getattr(args, name)
        if value is None and args.out_dir is not None:
            value = Path(args.out_dir) / Path(layout.OUTPUTS[name]).name
        if value is None:
            raise SystemExit(f"ephys {args.command}: give --{name.replace('_', '-')} or --out-dir")
        out[name] = Path(value)
    return out


def _model(args) -> str:
    """The sleep model version: --model (what the workflow passes), else what sleep.model selects."""
    from pipeline.sleep.staging import model_version

    model = getattr(args, "model", None)  # `ephys figures` has no --model: the configured one
    return model_version(model if model is not None else _config(args)["sleep"]["model"])


def cmd_classify(args) -> int:
    from pipeline.io.recording_info import RecordingInfo
    from pipeline.sleep.staging import classify

    info = RecordingInfo.load(args.recording_json)
    outputs = _outputs(args, ["hypnogram", "probabilities", "annotations", "summary", "review"])
    model = args.model if args.model is not None else _config(args)["sleep"]["model"]
    summary = classify(args.features, outputs, epoch_s=float(_option_or_config(args, "epoch_s", "sleep", "epoch_s")),
                       meas_date=info.start_datetime, model=model, channel_map=info.channel_map,
                       min_confidence=float(_option_or_config(args, "min_confidence", "sleep", "min_confidence")),
                       min_bout_s=float(_option_or_config(args, "min_bout_s", "sleep", "min_bout_s")),
                       n_review=int(_option_or_config(args, "n_review", "sleep", "n_review")),
                       duration_s=info.duration_s, extra_features=_head_speed_features(args.head_speed))
    print(json.dumps(summary["fractions"]))
    return 0


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _codes(text: str | None) -> dict | None:
    from pipeline.errors import ConfigError

    if not text:
        return None
    codes = {}
    for item in text.split(","):
        code, sep, state = item.partition("=")
        if not sep or not code.strip() or not state.strip():
            raise ConfigError(f"--codes: {item.strip()!r} is not CODE=STATE (e.g. --codes 1=wake,2=nrem,3=rem)")
        codes[code.strip()] = state.strip()
    return codes


def cmd_score(args) -> int:
    from pipeline.sleep.score_file import score_file

    result = score_file(args.file, args.out, eeg=_names(args.eeg), emg=args.emg, epoch_s=args.epoch_s,
                        model=args.model, truth=args.truth, codes=_codes(args.codes),
                        min_confidence=args.min_confidence, min_bout_s=args.min_bout_s)
    summary = result["summary"]
    log.info("wrote the hypnogram, probabilities, annotations, summary and review of %d epochs to %s",
             summary["n_epochs"], args.out)
    if result["agreement"] is not None:
        print(json.dumps(result["agreement"]))
    else:
        print(json.dumps({"fractions": summary["fractions"], "notes": summary["notes"]}))
    return 0


def cmd_train(args) -> int:
    from pipeline.sleep.train import train

    header = train(args.manifest, args.out, name=args.name, epoch_s=args.epoch_s, eeg=_names(args.eeg) or None,
                   emg=args.emg, codes=_codes(args.codes), evaluate_first=not args.no_evaluation)
    ev = header["evaluation"]
    log.info("saved %s (%s): trained on %d recordings", args.out, header["version"], len(header["trained_on"]))
    print(json.dumps({"model": str(args.out), "version": header["version"], "evaluation": ev}))
    return 0


def _hour_or_none(text: str | float | None) -> float | None:
    if text is None or str(text).strip().lower() in ("none", "null", ""):
        return None
    return float(text)


def _analysis_settings(args, info) -> dict:
    """The configuration values that made the figures' inputs: --analysis-settings (the
    workflow passes exactly its rules' params), else the configuration's."""
    from pipeline.errors import ConfigError
    from pipeline.provenance import ANALYSIS_STAGES, OPTIONAL_STAGES, stage_settings

    if args.analysis_settings is not None:
        try:
            settings = json.loads(args.analysis_settings)
            if not isinstance(settings, dict) or not set(ANALYSIS_STAGES) <= set(settings) <= {*ANALYSIS_STAGES,
                                                                                               *OPTIONAL_STAGES}:
                raise ValueError(f"it must map {', '.join(ANALYSIS_STAGES)} (and optionally "
                                 f"{', '.join(OPTIONAL_STAGES)}) to their values")
        except ValueError as e:
            raise ConfigError(f"--analysis-settings is not usable ({e}).") from None
        return settings
    all_settings = stage_settings(_config(args), model_version=_model(args), channel_map=info.channel_map or None)
    used = [*ANALYSIS_STAGES, *(["tracking"] if args.head_speed else [])]
    return {stage: all_settings[stage] for stage in used}


def cmd_figures(args) -> int:
    from pipeline.figures.clock import light_schedule
    from pipeline.figures.report import make_figures
    from pipeline.io.recording_info import RecordingInfo

    info = RecordingInfo.load(args.recording_json)
    outputs = _outputs(args, list(layout.FIGURE_OUTPUTS))
    own = {"lights_on": _hour_or_none(_option_or_config(args, "lights_on", "figures", "lights_on")),
           "lights_off": _hour_or_none(_option_or_config(args, "lights_off", "figures", "lights_off")),
           "hours_per_page": float(_option_or_config(args, "hours_per_page", "figures", "hours_per_page"))}
    make_figures(info, args.spectrograms, args.hypnogram, args.summary, outputs,
                 settings={**_analysis_settings(args, info), "figures": own},
                 schedule=light_schedule(own["lights_on"], own["lights_off"]), hours_per_page=own["hours_per_page"],
                 lfp_qc=args.lfp_qc, run_id=args.run_id, head_speed=args.head_speed)
    return 0


def cmd_publish(args) -> int:
    from pipeline.store import publish_recording

    result = publish_recording(_config(args), args.animal, args.recording_id, args.files, args.marker)
    print(result.link)
    return 0


# -- registry, poller, status ----------------------------------------------------------
def cmd_add(args) -> int:
    from pipeline.config import check_data_roots
    from pipeline.io.registry import Recording, Registry, check_name, resolve_raw_path, resolve_tracking_file
    from pipeline.sleep.models import check_model_cell

    cfg = _config(args)
    check_data_roots(cfg)
    rec_id, animal = check_name(args.recording_id, "recording id"), check_name(args.animal, "animal")
    raw = resolve_raw_path(args.raw_path, cfg["data_roots"], cwd=Path.cwd())
    rec = Recording(rec_id, animal, str(raw),
                    notes=args.notes or "", source="cli", sleep_model=check_model_cell(args.sleep_model, cfg),
                    tracking=resolve_tracking_file(args.tracking, raw, cfg["data_roots"], cwd=Path.cwd()))
    Registry(Path(cfg["base_dir"]) / layout.STATE_DIR).add(rec, replace=args.replace)
    print(f"registered {rec.recording_id}; run `snakemake --cores N` (every registered recording) "
          f"or `snakemake --cores N {layout.OUTPUTS['published'].format(rec=rec.recording_id)}` to process it")
    return 0


def _print_report(report, cfg: dict) -> None:
    print(f"registered: {len(report.registered)}, invalid rows: {len(report.invalid)}, "
          f"running: {len(report.running)}, done: {len(report.done)}, failed: {len(report.failed)}")
    for rec_id in report.done:
        print(f"  {rec_id}: done")
    for rec_id in report.failed:
        print(f"  {rec_id}: failed (see its row's message, or `ephys status`)")


def _log_to_file(cfg: dict) -> Path:
    """The poller's own log, rotated, beside the console's (a service's console is often lost)."""
    from logging.handlers import RotatingFileHandler

    path = Path(cfg["base_dir"]) / layout.POLLER_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=layout.POLLER_LOG_BYTES, backupCount=layout.POLLER_LOG_KEEP,
                                  encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return path


def cmd_poll(args) -> int:
    from pipeline.poller import Poller, poll_forever, poll_until_settled, poller_lock

    cfg = _config(args)
    _log_to_file(cfg)
    try:
        with poller_lock(cfg["base_dir"]):
            if args.until_done:
                report = poll_until_settled(lambda: Poller(cfg), every_s=args.every, on_poll=_progress_log(cfg))
            elif args.once:
                report = Poller(cfg).poll_once()
            else:
                poll_forever(lambda: Poller(cfg), float(cfg["poller"]["interval_s"]))
                return 0
    except PipelineError as e:
        log.error("%s", e)  # into the poller's log file too
        raise
    _print_report(report, cfg)
    return 1 if report.failed else 0


def _progress_log(cfg: dict):
    """An on_poll callback that logs each running recording's progress when it changes."""
    last: dict[str, str] = {}

    def show(report) -> None:
        for row in recording_states(cfg, only=report.running):
            if last.get(row["recording_id"]) != row["progress"]:
                last[row["recording_id"]] = row["progress"]
                log.info("%s: %s", row["recording_id"], row["progress"])
        for rec_id in report.done + report.failed:
            log.info("%s: %s", rec_id, "done" if rec_id in report.done else "failed")

    return show


def recording_states(cfg: dict, *, only: list[str] | None = None) -> list[dict]:
    """Every registered recording (or those in `only`) with its state, as `ephys status` shows it."""
    from pipeline.executor import RunFiles, make_executor
    from pipeline.io.registry import Registry
    from pipeline.progress import recording_state

    base = Path(cfg["base_dir"])
    runs, executor = RunFiles(base), make_executor(cfg)
    out = []
    for rec in Registry(base / layout.STATE_DIR).read().values():
        if only is not None and rec.recording_id not in only:
            continue
        st = recording_state(base, rec.recording_id, runs.load(rec.run_id), executor)
        out.append({"recording_id": rec.recording_id, "animal": rec.animal, "state": st.state,
                    "progress": st.progress, "message": st.message, "results": st.link})
    return out


def cmd_cancel(args) -> int:
    """Stop a recording's run and its jobs; its row says `cancelled` at the next poll."""
    from pipeline.executor import RunFiles, make_executor, now_iso
    from pipeline.io.registry import Registry

    cfg = _config(args)
    base = Path(cfg["base_dir"])
    rec = Registry(base / layout.STATE_DIR).read().get(args.recording_id)
    runs = RunFiles(base)
    run = runs.load(rec.run_id) if rec else None
    if run is None:
        raise PipelineError(f"{args.recording_id} has no run to cancel (`ephys status` lists the recordings).")
    executor = make_executor(cfg)
    was_running = executor.is_running(run)
    executor.stop(run)
    run.cancelled_at = now_iso()
    runs.save(run)
    print(f"{args.recording_id}: run {run.run_id} {'cancelled' if was_running else 'was not running; marked cancelled'}")
    return 0


def cmd_status(args) -> int:
    rows = recording_states(_config(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no recordings registered")
        return 0
    cols = ["recording_id", "animal", "state", "progress", "results"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
        if r["message"]:
            print(f"    {r['message']}")
    return 0


def cmd_demo(args) -> int:
    """Synthetic recording -> a row in the sheet -> polls until it is done -> figures."""
    from pipeline.poller import Poller, poll_until_settled, poller_lock
    from pipeline.sheets import make_sheet
    from pipeline.synth import write_synthetic_recording

    cfg = _config(args)
    root = Path(cfg["data_roots"][0])
    raw_dir = root / args.recording_id
    if not any(raw_dir.glob("*.ncs")):
        log.info("writing a %.0f-minute synthetic recording (%d channels at %g Hz) to %s",
                 args.duration / 60, args.channels, args.rate, raw_dir)
        write_synthetic_recording(raw_dir, duration_s=args.duration, n_channels=args.channels,
                                  sampling_rate=args.rate, seed=args.seed, progress=_progress_logger("synthetic recording", 10))
    sheet = make_sheet(cfg)
    if not any(r["recording_id"] == args.recording_id for r in sheet.read_rows()):
        sheet.append_row({"recording_id": args.recording_id, "animal": args.animal, "raw_path": str(raw_dir),
                          "notes": "synthetic demo recording"})
        log.info("added a row for %s to the sheet", args.recording_id)

    with poller_lock(cfg["base_dir"]):
        poll_until_settled(lambda: Poller(cfg), every_s=2.0, on_poll=_progress_log(cfg))
    row = next(r for r in sheet.read_rows() if r["recording_id"] == args.recording_id)
    print(f"\nsheet row {args.recording_id}: status={row['status']}  progress={row['progress']}")
    print(f"  message: {row['message']}")
    if row["status"] != "done":
        return 1
    print(f"  results: {row['results_link']}")
    from pipeline.store import read_published

    pub = read_published(layout.RecordingPaths(args.recording_id, cfg["base_dir"]).published)
    folder = Path(pub.folder)
    if folder.is_dir():  # a store on this machine: where to click
        print(f"  figures: {folder / 'overview.png'}")
        print(f"  report:  {folder / 'report.pdf'}")
        print(f"  animal:  {folder.parent / Path(layout.ANIMAL_OUTPUTS['animal_summary_png']).name}")
    return 0


def _data_roots_option(s) -> None:
    s.add_argument("--data-roots", nargs="+", metavar="FOLDER",
                   help="the only folders raw files may lie in, links followed (default: data_roots)")


def _inspect_options(s) -> None:
    _data_roots_option(s)
    s.add_argument("--lfp-rate", type=float, help="LFP sampling rate in Hz (default: lfp.rate)")
    s.add_argument("--segment-s", type=float, help="segment length in s (default: lfp.segment_s)")
    s.add_argument("--channel-map", help="the default channel map as JSON (default: channel_maps.default); "
                                         "a channel_map.yaml in the raw folder wins over it")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ephys", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"ephys {__version__}")
    p.add_argument("--config", default=os.environ.get(CONFIG_ENV) or "config.yaml",
                   help=f"configuration file (default: ${CONFIG_ENV}, else ./config.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail in the log")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="write a synthetic Neuralynx recording (or EEG/EMG EDF) with its ground truth")
    s.add_argument("out_dir", nargs="?", help="folder for the Neuralynx recording (or give --edf)")
    s.add_argument("--edf", help="instead: write EEG_cortex, EEG_hippocampus and EMG as this EDF, with the "
                                 "scoring (one row per bout) beside it as NAME.truth.tsv")
    s.add_argument("--duration", type=parse_duration, default=600.0, help="length, e.g. 30m, 1h, 90s (default 10m)")
    s.add_argument("--hours", type=float, help="length in hours (instead of --duration)")
    s.add_argument("--channels", type=int, default=64)
    s.add_argument("--rate", type=float, help="sampling rate in Hz (default 32000; 250 with --edf)")
    s.add_argument("--seed", type=int, default=0, help="animal: another seed is another animal")
    s.add_argument("--gap", help="leave out records: START:LENGTH, e.g. 5m:30s")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("inspect", help="describe a raw recording folder (writes recording.json)")
    s.add_argument("raw_dir")
    s.add_argument("out_json")
    s.add_argument("--recording-id")
    s.add_argument("--animal")
    _inspect_options(s)
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("convert", help="convert a whole raw recording to LFP segments, without Snakemake")
    s.add_argument("raw_dir")
    s.add_argument("out_dir", help="gets recording.json and lfp/ (as results/REC/ in the workflow)")
    s.add_argument("--recording-id")
    _inspect_options(s)
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("convert-segment", help="convert one time segment (what the workflow runs)")
    s.add_argument("recording_json")
    s.add_argument("segment", type=int)
    s.add_argument("out_fif")
    s.add_argument("--qc", help="the segment's QC sidecar to write (default: OUT_FIF with .json)")
    s.add_argument("--lfp-emg", metavar="NPZ",
                   help="also write here the muscle tone from the LFP per epoch, made from the raw data (for an "
                        "LFP rate too low for the spectrogram stage to make it)")
    s.add_argument("--epoch-s", type=float, help="epoch length in s of --lfp-emg (default: sleep.epoch_s)")
    _data_roots_option(s)
    s.set_defaults(func=cmd_convert_segment)

    s = sub.add_parser("spectrogram", help="multitaper spectrograms per region of one LFP segment")
    s.add_argument("recording_json")
    s.add_argument("lfp_fif")
    s.add_argument("out_npz")
    s.add_argument("--epoch-s", type=float, help="epoch (window) length in s (default: sleep.epoch_s)")
    s.add_argument("--time-bandwidth", type=float, help="multitaper NW (default: spectrogram.time_bandwidth)")
    s.add_argument("--fmax", type=float, help="highest frequency kept in Hz (default: spectrogram.fmax)")
    s.add_argument("--per-channel", choices=["yes", "no"],
                   help="also one spectrogram per good channel (default: spectrogram.per_channel)")
    s.add_argument("--lfp-emg", metavar="NPZ",
                   help="the muscle tone the convert stage estimated (convert-segment --lfp-emg): used when the "
                        "LFP's rate is too low to estimate it here")
    s.set_defaults(func=cmd_spectrogram)

    s = sub.add_parser("features", help="per-epoch sleep features of one segment's spectrograms")
    s.add_argument("spectrogram_npz")
    s.add_argument("out_tsv")
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("head-speed", help="head speed per sleep epoch from a DeepLabCut CSV")
    s.add_argument("recording_json")
    s.add_argument("raw_dir", metavar="RAW_DIR_OR_CSV",
                   help="the recording's raw folder, holding a *DLC*.csv or tracking.csv, or the DeepLabCut CSV "
                        "itself (either with an optional tracking.yaml beside the CSV)")
    s.add_argument("out_tsv", help="head_speed.tsv to write: onset, duration, speed")
    s.add_argument("--json", help="the unit, body parts and notes (default: OUT_TSV with .json)")
    s.add_argument("--epoch-s", type=float, help="epoch length in s (default: sleep.epoch_s)")
    s.add_argument("--tracking", metavar="JSON", help="the tracking settings as JSON (default: tracking)")
    _data_roots_option(s)
    s.set_defaults(func=cmd_head_speed)

    s = sub.add_parser("classify", help="score sleep states of a whole recording from its feature tables")
    s.add_argument("recording_json")
    s.add_argument("features", nargs="+")
    s.add_argument("--epoch-s", type=float, help="epoch length in s (default: sleep.epoch_s)")
    s.add_argument("--model", help="the sleep model: a model file made by `ephys train`, or label-free "
                                   "(default: sleep.model)")
    s.add_argument("--min-confidence", type=float, help="default: sleep.min_confidence")
    s.add_argument("--min-bout-s", type=float, help="default: sleep.min_bout_s")
    s.add_argument("--n-review", type=int, help="default: sleep.n_review")
    s.add_argument("--head-speed", metavar="TSV", help="head speed per epoch (ephys head-speed), an extra feature")
    for name in ("hypnogram", "probabilities", "annotations", "summary", "review"):
        s.add_argument(f"--{name}", help=f"where to write the {name} ({Path(layout.OUTPUTS[name]).name})")
    s.add_argument("--out-dir", help="write all five under their usual names in this folder")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("score", help="score the sleep of any recording MNE reads (EDF, FIF, BrainVision ...)",
                       description="Score sleep states of a recording file a lab already has. Writes "
                                   "hypnogram.tsv, probabilities.tsv, hypnogram-annot.fif, summary.json, review.tsv "
                                   "and features.tsv into --out; with --truth, prints agreement as one JSON line.")
    s.add_argument("file")
    s.add_argument("--eeg", required=True, help="EEG channel names, comma-separated: the cortical (slow-wave) one "
                                                "first, the theta one (parietal, hippocampal) last")
    s.add_argument("--emg", help="the EMG channel's name (none: muscle tone is estimated from the EEG where the "
                                 "rate allows)")
    s.add_argument("--out", required=True, help="folder for the outputs")
    s.add_argument("--epoch-s", type=float, default=4.0, choices=[2.0, 2.5, 4.0, 5.0, 10.0])
    s.add_argument("--model", help="a model file made by `ephys train` (default: label-free scoring)")
    s.add_argument("--truth", help="a scoring file to compare with (intervals, one state per epoch, annotations)")
    s.add_argument("--codes", help="what numeric states in --truth mean, e.g. 1=wake,2=nrem,3=rem")
    s.add_argument("--min-confidence", type=float, default=0.5)
    s.add_argument("--min-bout-s", type=float, default=0.0)
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("train", help="train an XGBoost sleep model on recordings scored by people",
                       description="Train a sleep model from a manifest (TSV: source, truth, animal) and report "
                                   "its leave-one-animal-out agreement. See pipeline/sleep/train.py.")
    s.add_argument("manifest")
    s.add_argument("--out", required=True, help="the model file to write (JSON)")
    s.add_argument("--name", default="lab", help="a short name, part of the model's version")
    s.add_argument("--epoch-s", type=float, default=4.0, choices=[2.0, 2.5, 4.0, 5.0, 10.0])
    s.add_argument("--eeg", help="for recording files: EEG channel names, as for `ephys score`")
    s.add_argument("--emg", help="for recording files: the EMG channel's name")
    s.add_argument("--codes", help="what numeric states in the scoring files mean, e.g. 1=wake,2=nrem,3=rem")
    s.add_argument("--no-evaluation", action="store_true", help="skip the leave-one-animal-out evaluation")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("figures", help="draw the figures, the PDF report and provenance.json")
    s.add_argument("recording_json")
    s.add_argument("--hypnogram", required=True)
    s.add_argument("--summary", required=True)
    s.add_argument("--spectrograms", nargs="+", required=True)
    s.add_argument("--lfp-qc", nargs="*", default=[], metavar="SEG_JSON",
                   help="the segments' QC sidecars (lfp/seg*.json), for the LFP RMS across the recording")
    for name in layout.FIGURE_OUTPUTS:
        s.add_argument(f"--{name.replace('_', '-')}", dest=name,
                       help=f"where to write {Path(layout.OUTPUTS[name]).name}")
    s.add_argument("--out-dir", help="write all of them under their usual names in this folder")
    s.add_argument("--lights-on", help="hour of the day the lights go on, or none (default: figures.lights_on)")
    s.add_argument("--lights-off", help="hour of the day the lights go off, or none (default: figures.lights_off)")
    s.add_argument("--hours-per-page", type=float,
                   help="extra overview pages of this many hours; 0: none (default: figures.hours_per_page)")
    s.add_argument("--analysis-settings", metavar="JSON",
                   help="the configuration values of inspect, spectrogram and classify that made the inputs, "
                        "recorded in the provenance (default: the configuration's)")
    s.add_argument("--run-id")
    s.add_argument("--head-speed", metavar="TSV", help="head speed per epoch (ephys head-speed), drawn as a trace")
    s.set_defaults(func=cmd_figures)

    s = sub.add_parser("publish", help="copy figures, report and hypnogram to the results store")
    s.add_argument("animal")
    s.add_argument("recording_id")
    s.add_argument("marker", help="published.json to write on success")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("add", help="register a recording without any sheet")
    s.add_argument("recording_id")
    s.add_argument("animal")
    s.add_argument("raw_path")
    s.add_argument("--notes")
    s.add_argument("--sleep-model", default="",
                   help="a model's name in sleep.models_dir, or label-free, as a sheet's `sleep model` cell "
                        "(default: sleep.model)")
    s.add_argument("--tracking", metavar="CSV", default="",
                   help="the DeepLabCut CSV of the recording's video, as a sheet's `tracking` cell (relative to "
                        "here, else to RAW_PATH; inside data_roots; default: a *DLC*.csv or tracking.csv in RAW_PATH)")
    s.add_argument("--replace", action="store_true", help="replace a registration with the same id")
    s.set_defaults(func=cmd_add)

    s = sub.add_parser("poll", help="read the sheet, start new rows, write every row's progress back")
    s.add_argument("--once", action="store_true",
                   help="one poll, then exit; it returns within seconds, runs go on in the background "
                        "(default: poll every poller.interval_s)")
    s.add_argument("--until-done", action="store_true",
                   help="poll every few seconds until no run is going on, then exit")
    s.add_argument("--every", type=float, default=2.0, help="seconds between polls with --until-done (default 2)")
    s.set_defaults(func=cmd_poll)

    s = sub.add_parser("cancel", help="stop a recording's run and its jobs (the row then says cancelled)")
    s.add_argument("recording_id")
    s.set_defaults(func=cmd_cancel)

    s = sub.add_parser("status", help="table of registered recordings and how far each has got")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("demo", help="synthetic recording -> a sheet row -> polls until done -> figures")
    s.add_argument("--duration", type=parse_duration, default=1800.0, help="default 30m")
    s.add_argument("--channels", type=int, default=64)
    s.add_argument("--rate", type=float, default=32000.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--recording-id", default="demo-rec1")
    s.add_argument("--animal", default="demo-mouse")
    s.set_defaults(func=cmd_demo)
    return p


# Stages the workflow runs as jobs: each holds a core slot while it works when the
# local executor shares cores between runs (see pipeline.executor.slots).
STAGE_COMMANDS = {"inspect", "convert-segment", "spectrogram", "features", "head-speed", "classify", "figures"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if args.command in STAGE_COMMANDS:
            from pipeline.executor.slots import hold_core_slot

            if os.environ.get("SLURM_JOB_ID"):
                log.info("running as SLURM job %s on %s", os.environ["SLURM_JOB_ID"], socket.gethostname())
            hold_core_slot()
        return args.func(args)
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        words = error_words(e)  # an expected failure, or a full disk or a folder it may not write
        if words is not None:
            if isinstance(e, OSError):  # the maintainer who makes room wants the traceback in the log
                log.exception("ephys %s stopped: a file could not be written", args.command)
            else:
                log.debug("details", exc_info=True)
            print(f"ERROR: {words}", file=sys.stderr, flush=True)
            return 2
        # A bug: the log gets the traceback, the sheet one line.
        log.exception("unexpected error")
        detail = str(e).splitlines()[0][:300] if str(e) else ""
        print(f"ERROR: {INTERNAL_ERROR} in `ephys {args.command}` ({type(e).__name__}{': ' + detail if detail else ''}); "
              "please tell a maintainer.", file=sys.stderr, flush=True)
        return 3


if __name__ == "__main__":
    sys.exit(main())
