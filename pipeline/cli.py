"""The `ephys` command: every stage by hand, the poller, and the demo.

The Snakemake rules call these same sub-commands, so a stage run by hand and a stage
run by the workflow are one implementation. Expected failures print one line starting
with `ERROR: ` (the poller copies it into the sheet) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from pipeline import __version__
from pipeline.errors import PipelineError

log = logging.getLogger("ephys")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for noisy in ("matplotlib", "PIL", "mne"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args):
    from pipeline.config import load_config

    return load_config(args.config)


def parse_duration(text: str) -> float:
    """'30m', '1h', '90s', '1h30m' or plain seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h or 90s")
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)


# -- stage commands ------------------------------------------------------------------
def cmd_synth(args) -> int:
    from pipeline.synth import write_synthetic_recording

    gap = None
    if args.gap:
        start, _, length = args.gap.partition(":")
        gap = (parse_duration(start), parse_duration(length))
    last = {"t": 0.0}

    def progress(done_s, total_s):
        if time.monotonic() - last["t"] > 5 or done_s >= total_s:
            last["t"] = time.monotonic()
            log.info("synthetic recording: %.0f%% (%.0f of %.0f s)", 100 * done_s / total_s, done_s, total_s)

    summary = write_synthetic_recording(args.out_dir, duration_s=args.duration, n_channels=args.channels,
                                        sampling_rate=args.rate, seed=args.seed, gap=gap, progress=progress)
    log.info("wrote %s", args.out_dir)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_inspect(args) -> int:
    from pipeline.convert import inspect_recording

    cfg = _config(args)
    info = inspect_recording(args.raw_dir, args.out_json, cfg, recording_id=args.recording_id, animal=args.animal)
    print(f"{len(info['channels'])} channels at {info['sampling_rate']:g} Hz, {info['duration_s']:.1f} s, "
          f"{len(info['segments'])} segment(s), {len(info['gaps'])} gap(s)")
    return 0


def cmd_convert_segment(args) -> int:
    from pipeline.convert import convert_segment, load_info

    convert_segment(load_info(args.recording_json), args.segment, args.out_fif)
    return 0


def cmd_convert(args) -> int:
    """A whole recording, without Snakemake: inspect, then every segment in turn."""
    from pipeline.convert import convert_segment, inspect_recording

    cfg = _config(args)
    out = Path(args.out_dir)
    info = inspect_recording(args.raw_dir, out / "recording.json", cfg, recording_id=args.recording_id)
    for seg in info["segments"]:
        convert_segment(info, seg["index"], out / "lfp" / f"seg{seg['index']}.fif")
    print(f"LFP written to {out / 'lfp'}")
    return 0


def cmd_spectrogram(args) -> int:
    from pipeline.convert import load_info
    from pipeline.spectral import compute_spectrogram

    compute_spectrogram(load_info(args.recording_json), args.lfp_fif, args.out_npz, _config(args))
    return 0


def cmd_features(args) -> int:
    from pipeline.sleep.features import compute_features

    compute_features(args.spectrogram_npz, args.out_tsv)
    return 0


def cmd_score(args) -> int:
    from datetime import datetime

    from pipeline.convert import load_info
    from pipeline.sleep.staging import classify

    cfg = _config(args)
    info = load_info(args.recording_json)
    summary = classify(args.features, args.out_dir, epoch_s=float(cfg["sleep"]["epoch_s"]),
                       meas_date=datetime.fromisoformat(info["start_time"]))
    print(json.dumps(summary["fractions"]))
    return 0


def cmd_figures(args) -> int:
    from pipeline.convert import load_info
    from pipeline.figures.report import make_figures

    info = load_info(args.recording_json)
    make_figures(info, args.spectrograms, args.sleep_dir, args.out_dir, run_id=args.run_id)
    return 0


def cmd_publish(args) -> int:
    from pipeline.publish import publish_recording

    result = publish_recording(_config(args), args.animal, args.recording_id, args.files, args.marker)
    print(result["link"])
    return 0


# -- registry, poller, status ----------------------------------------------------------
def cmd_add(args) -> int:
    from pipeline.io.registry import Recording, Registry, check_name, new_run_id, resolve_raw_path

    cfg = _config(args)
    rec = Recording(check_name(args.recording_id, "recording id"), check_name(args.animal, "animal"),
                    str(resolve_raw_path(args.raw_path, cfg["data_roots"], cwd=Path.cwd())), notes=args.notes or "",
                    run_id=new_run_id(), source="cli")
    Registry(Path(cfg["base_dir"]) / "state").add(rec, replace=args.replace)
    print(f"registered {rec.recording_id}; run `snakemake --cores {cfg['executor']['cores']}` "
          f"or `snakemake results/{rec.recording_id}/published.json` to process it")
    return 0


def cmd_poll(args) -> int:
    from pipeline.poller import Poller, poll_forever, poller_lock

    cfg = _config(args)
    with poller_lock(Path(cfg["base_dir"]) / "state"):
        if args.once:
            report = Poller(cfg, args.config).poll_once()
            print(f"registered: {len(report.registered)}, invalid rows: {len(report.invalid)}, "
                  f"done: {len(report.done)}, failed: {len(report.failed)}")
            for rec_id in report.done:
                print(f"  {rec_id}: results in {Path(cfg['store']['path'])}")
            return 1 if report.failed else 0
        poll_forever(lambda: Poller(_config(args), args.config), float(cfg["poller"]["interval_s"]))
    return 0


def recording_states(cfg: dict) -> list[dict]:
    from pipeline.io.registry import Registry
    from pipeline.poller import failure_message, recording_progress

    base = Path(cfg["base_dir"])
    out = []
    for rec in Registry(base / "state").read().values():
        p = recording_progress(base, rec.recording_id)
        err = failure_message(base, rec.recording_id, 0) if p.fraction < 1 else None
        state = "done" if p.fraction >= 1 else ("failed" if err else ("started" if p.fraction > 0 else "registered"))
        link = ""
        marker = base / "results" / rec.recording_id / "published.json"
        if marker.exists():
            link = json.loads(marker.read_text())["link"]
        out.append({"recording_id": rec.recording_id, "animal": rec.animal, "state": state,
                    "progress": p.text, "message": err or "", "results": link})
    return out


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
    """Synthetic recording -> a row in the local sheet -> one poll -> figures."""
    from pipeline.sheets.local_csv import LocalCsvSheet
    from pipeline.synth import write_synthetic_recording

    cfg = _config(args)
    root = Path(cfg["data_roots"][0])
    raw_dir = root / args.recording_id
    if not any(raw_dir.glob("*.ncs")):
        log.info("writing a %.0f-minute synthetic recording (%d channels at %g Hz) to %s",
                 args.duration / 60, args.channels, args.rate, raw_dir)
        last = {"t": 0.0}

        def progress(done_s, total_s):
            if time.monotonic() - last["t"] > 10 or done_s >= total_s:
                last["t"] = time.monotonic()
                log.info("synthetic recording: %.0f%%", 100 * done_s / total_s)

        write_synthetic_recording(raw_dir, duration_s=args.duration, n_channels=args.channels,
                                  sampling_rate=args.rate, seed=args.seed, progress=progress)
    sheet = LocalCsvSheet(cfg["sheet"]["path"])
    if not any(r["recording_id"] == args.recording_id for r in sheet.read_rows()):
        import csv

        sheet.ensure_exists()
        with open(sheet.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\r\n").writerow(
                [args.recording_id, args.animal, str(raw_dir), "synthetic demo recording", ""])
        log.info("added a row for %s to the sheet %s", args.recording_id, sheet.path)
    from pipeline.poller import Poller, poller_lock

    with poller_lock(Path(cfg["base_dir"]) / "state"):
        report = Poller(cfg, args.config).poll_once()
    row = next(r for r in sheet.read_rows() if r["recording_id"] == args.recording_id)
    print(f"\nsheet row {args.recording_id}: status={row['status']}  progress={row['progress']}")
    print(f"  message: {row['message']}")
    if row["status"] == "done":
        folder = Path(cfg["store"]["path"]) / args.animal / args.recording_id
        print(f"  figures: {folder / 'overview.png'}")
        print(f"  report:  {folder / 'report.pdf'}")
        return 0
    return 1 if report.failed or row["status"] != "done" else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ephys", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"ephys {__version__}")
    p.add_argument("--config", default="config.yaml", help="configuration file (default: ./config.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail in the log")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="write a synthetic Neuralynx recording with its ground truth")
    s.add_argument("out_dir")
    s.add_argument("--duration", type=parse_duration, default=600.0, help="length, e.g. 30m, 1h, 90s (default 10m)")
    s.add_argument("--channels", type=int, default=64)
    s.add_argument("--rate", type=float, default=32000.0, help="sampling rate in Hz (default 32000)")
    s.add_argument("--seed", type=int, default=0, help="animal: another seed is another animal")
    s.add_argument("--gap", help="leave out records: START:LENGTH, e.g. 5m:30s")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("inspect", help="describe a raw recording folder (writes recording.json)")
    s.add_argument("raw_dir")
    s.add_argument("out_json")
    s.add_argument("--recording-id")
    s.add_argument("--animal")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("convert", help="convert a whole raw recording to LFP segments, without Snakemake")
    s.add_argument("raw_dir")
    s.add_argument("out_dir")
    s.add_argument("--recording-id")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("convert-segment", help="convert one time segment (what the workflow runs)")
    s.add_argument("recording_json")
    s.add_argument("segment", type=int)
    s.add_argument("out_fif")
    s.set_defaults(func=cmd_convert_segment)

    s = sub.add_parser("spectrogram", help="multitaper spectrograms per region of one LFP segment")
    s.add_argument("recording_json")
    s.add_argument("lfp_fif")
    s.add_argument("out_npz")
    s.set_defaults(func=cmd_spectrogram)

    s = sub.add_parser("features", help="per-epoch sleep features of one segment's spectrograms")
    s.add_argument("spectrogram_npz")
    s.add_argument("out_tsv")
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("score", help="score sleep states of a whole recording from its feature tables")
    s.add_argument("recording_json")
    s.add_argument("out_dir")
    s.add_argument("features", nargs="+")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("figures", help="draw the figures and the PDF report")
    s.add_argument("recording_json")
    s.add_argument("sleep_dir")
    s.add_argument("out_dir")
    s.add_argument("spectrograms", nargs="+")
    s.add_argument("--run-id")
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
    s.add_argument("--replace", action="store_true", help="replace a registration with the same id")
    s.set_defaults(func=cmd_add)

    s = sub.add_parser("poll", help="read the sheet, process new rows, write their status back")
    s.add_argument("--once", action="store_true", help="one poll, then exit (default: poll every poller.interval_s)")
    s.set_defaults(func=cmd_poll)

    s = sub.add_parser("status", help="table of registered recordings and how far each has got")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("demo", help="synthetic recording -> local sheet row -> one poll -> figures")
    s.add_argument("--duration", type=parse_duration, default=1800.0, help="default 30m")
    s.add_argument("--channels", type=int, default=64)
    s.add_argument("--rate", type=float, default=32000.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--recording-id", default="demo-rec1")
    s.add_argument("--animal", default="demo-mouse")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except PipelineError as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        return 2
    except ValueError as e:
        # Bad data found by the analysis (empty features, no good channel ...): say it plainly.
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        log.debug("details", exc_info=True)
        return 2
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: the sheet gets one line, the log the traceback
        log.exception("unexpected error")
        print(f"ERROR: internal error in `ephys {args.command}` ({type(e).__name__}: {e}); "
              "please tell a maintainer.", file=sys.stderr, flush=True)
        return 3


if __name__ == "__main__":
    sys.exit(main())
