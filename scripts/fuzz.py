"""A fuzzing campaign: the properties of tests/fuzz_targets.py, for as long as you give them.

    python scripts/fuzz.py TARGET [TARGET ...] --seconds N [--max-examples K] [--findings DIR]
    python scripts/fuzz.py TARGET --replay FINDING.pickle    # one saved input, again

TARGET is one of audio, stream, stream-app, twilio, audiosocket, audiohook, manifest, rules,
config, upload, upload-app, or `all`; targets run in turn, each for N seconds or K inputs,
whichever ends first.
Prints, per target, executions, seconds, exec/s and findings. A finding is a crash (an
exception the property does not allow) or a hang (an input over --hang-seconds); its input
is saved as a pickle and its traceback as text under the findings folder, at most three
inputs per distinct crash site. A crash that kills the process (a segfault in native code)
leaves its input as TARGET/in-flight.pickle and the stacks in TARGET/fatal.txt. Exit code
1 when anything was found.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import logging
import pickle
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fuzz_targets import TARGETS, Target, service_client  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

# Examples per hypothesis run: the time budget is checked between runs.
CHUNK_EXAMPLES = 500
INPUTS_KEPT_PER_SITE = 3
PROGRESS_SECONDS = 60.0


class Hang(Exception):
    """An input took longer than the per-input limit."""


@dataclass
class Campaign:
    """Counts and findings of one target's run."""

    target: str
    findings_dir: Path
    executions: int = 0
    findings: int = 0
    sites: dict[str, int] = field(default_factory=dict)

    def record(self, value: Any, error: BaseException) -> None:
        """Keep the input and traceback of a finding (a few per crash site)."""
        self.findings += 1
        frames = traceback.extract_tb(error.__traceback__)
        if isinstance(error, Hang):
            frames = frames[:-1]  # where it was stuck, not the alarm handler
        last = frames[-1] if frames else None
        site = f"{type(error).__name__}@{last.filename}:{last.lineno}" if last else repr(error)
        seen = self.sites.get(site, 0)
        self.sites[site] = seen + 1
        if seen >= INPUTS_KEPT_PER_SITE:
            return
        folder = self.findings_dir / self.target
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(pickle.dumps(value)).hexdigest()[:12]
        (folder / f"{digest}.pickle").write_bytes(pickle.dumps(value))
        text = "".join(traceback.format_exception(error))
        (folder / f"{digest}.txt").write_text(f"{site}\n{value!r:.2000}\n\n{text}")
        print(f"  finding {site}: saved {folder / digest}.pickle", flush=True)


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang("input exceeded the per-input time limit")


def run_target(
    target: Target, seconds: float, max_examples: int, hang_seconds: float, findings_dir: Path
) -> Campaign:
    """Run one target's property until the time or example budget is spent."""
    campaign = Campaign(target.name, findings_dir)
    client_context = client = None
    if target.needs_app:
        client_context = service_client(Path(tempfile.mkdtemp(prefix="callmood-fuzz-app-")))
        client = client_context.__enter__()
    deadline = time.monotonic() + seconds
    signal.signal(signal.SIGALRM, _on_alarm)

    def execute(value: Any) -> None:
        campaign.executions += 1
        in_flight.write_bytes(pickle.dumps(value))
        # A hang in C code cannot take the alarm: dump every thread's stack and stop.
        faulthandler.dump_traceback_later(hang_seconds * 4, exit=True)
        signal.setitimer(signal.ITIMER_REAL, hang_seconds)
        try:
            target.check(client, value) if target.needs_app else target.check(value)
        except Exception as error:  # noqa: BLE001 - every exception is a finding
            signal.setitimer(signal.ITIMER_REAL, 0)
            campaign.record(value, error)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()

    # A crash in native code (a segfault) kills the process: keep the input in flight and
    # the stacks where they survive it.
    folder = findings_dir / target.name
    folder.mkdir(parents=True, exist_ok=True)
    in_flight = folder / "in-flight.pickle"
    fatal_log = (folder / "fatal.txt").open("w")
    faulthandler.enable(file=fatal_log, all_threads=True)
    started = last_report = time.monotonic()
    try:
        while time.monotonic() < deadline and campaign.executions < max_examples:
            if time.monotonic() - last_report >= PROGRESS_SECONDS:
                last_report = time.monotonic()
                print(
                    f"  {target.name}: {campaign.executions} executions, "
                    f"{last_report - started:.0f} s, {campaign.findings} findings",
                    flush=True,
                )
            chunk = min(CHUNK_EXAMPLES, max_examples - campaign.executions)
            run = settings(
                max_examples=chunk,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(target.inputs())(execute))
            run()
    finally:
        if client_context is not None:
            client_context.__exit__(None, None, None)
        faulthandler.disable()
        fatal_log.close()
    in_flight.unlink(missing_ok=True)
    return campaign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", choices=[*TARGETS, "all"], metavar="TARGET")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per target")
    parser.add_argument("--max-examples", type=int, default=10**9, help="inputs per target")
    parser.add_argument("--hang-seconds", type=float, default=20.0, help="per-input limit")
    parser.add_argument("--findings", type=Path, default=REPO / "test-artifacts" / "fuzz-findings")
    parser.add_argument(
        "--replay", type=Path, metavar="PICKLE", help="run TARGET's check on one saved input"
    )
    options = parser.parse_args(argv)
    if options.replay is not None:
        target = TARGETS[options.targets[0]]
        value = pickle.loads(options.replay.read_bytes())
        if target.needs_app:
            with service_client(Path(tempfile.mkdtemp(prefix="callmood-fuzz-app-"))) as client:
                target.check(client, value)
        else:
            target.check(value)
        print(f"{options.replay}: the property holds")
        return 0
    names = list(TARGETS) if "all" in options.targets else options.targets
    # python-multipart logs every malformed body it is fed: thousands of lines here.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    rows = []
    for name in names:
        print(f"fuzzing {name} for {options.seconds:g} s ...", flush=True)
        started = time.monotonic()
        campaign = run_target(
            TARGETS[name], options.seconds, options.max_examples, options.hang_seconds,
            options.findings,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        rows.append((name, campaign.executions, elapsed, campaign.findings, campaign.sites))
        print(
            f"  {name}: {campaign.executions} executions in {elapsed:.0f} s, "
            f"{campaign.findings} findings",
            flush=True,
        )
    print("\n| target | executions | seconds | exec/s | findings |")
    print("|---|---:|---:|---:|---:|")
    for name, executions, elapsed, findings, _ in rows:
        print(
            f"| {name} | {executions} | {elapsed:.0f} | {executions / elapsed:.0f} | {findings} |"
        )
    for name, _, _, _, sites in rows:
        for site, count in sites.items():
            print(f"{name}: {count} x {site}")
    return 1 if any(row[3] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
