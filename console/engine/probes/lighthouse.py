"""Lighthouse: a page's performance score and Web Vitals, from the Lighthouse CLI or from
the JSON reports Lighthouse CI writes.

A run starts a headless Chromium through the Lighthouse CLI (npm `lighthouse`) and costs
tens of seconds of wall time and several seconds of CPU (measured in the README), so: the
default interval is 15 min; one run at a time in the whole process (a module-wide lock:
a second target waits for the next slot instead of doubling the load); a hard deadline kills
the CLI's whole process group (Chromium included), and the run's scratch directory (the
CLI's TMPDIR, where Chromium's profile lives) is removed after every run, killed or not.
A missing CLI or Chromium, a page that fails to load, or a report that cannot be read is a
clear target error, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import resource
import shutil
import signal
import tempfile
import time
from pathlib import Path

import orjson

from console.engine.config.schema import LighthouseTarget
from console.engine.details import LighthouseDetails
from console.engine.model import CheckResult, Status
from console.engine.text.redact import redact
from console.engine.text.sanitize import one_line

__all__ = ["AUDITS", "CHROME_FLAGS", "LighthouseProbe", "parse_report"]

# Lighthouse audit id -> our metric (numericValue: ms, CLS unitless)
AUDITS = {
    "first-contentful-paint": "fcp_ms", "largest-contentful-paint": "lcp_ms",
    "interactive": "tti_ms", "total-blocking-time": "tbt_ms",
    "cumulative-layout-shift": "cls",
}
# Headless Chromium as root on a closed network: no sandbox (root), no GPU, and none of the
# background connections a closed network refuses at every start.
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-default-apps")
# The playbook's targets ("Frontend Metrics"); LCP and TBT at Lighthouse's "good" limits.
TARGETS = {"performance_score": (90.0, False), "fcp_ms": (1500.0, True),
           "lcp_ms": (2500.0, True), "tti_ms": (3000.0, True), "tbt_ms": (200.0, True),
           "cls": (0.1, True)}
_ONE_RUN: dict[int, asyncio.Lock] = {}  # per event loop: never two runs at once


def _run_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _ONE_RUN.get(id(loop))
    if lock is None:
        lock = _ONE_RUN[id(loop)] = asyncio.Lock()
    return lock


def parse_report(data: bytes) -> tuple[dict[str, float], LighthouseDetails, str | None]:
    """(metrics, details, error) of a Lighthouse JSON result (LHR); error names what went
    wrong when the page could not be measured."""
    try:
        lhr = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return {}, {}, f"not a Lighthouse JSON report ({exc})"
    if not isinstance(lhr, dict):
        return {}, {}, "not a Lighthouse JSON report"
    details: LighthouseDetails = {
        "lighthouse_version": one_line(lhr.get("lighthouseVersion") or "", 20),
        "final_url": one_line(redact(str(lhr.get("finalDisplayedUrl")
                                         or lhr.get("finalUrl") or "")), 200),
        "fetched": one_line(lhr.get("fetchTime") or "", 40),
    }
    runtime_error = lhr.get("runtimeError")
    if isinstance(runtime_error, dict) and runtime_error.get("code"):
        msg = runtime_error.get("message") or runtime_error.get("code")
        return {}, details, one_line(redact(f"Lighthouse could not measure the page: {msg}"),
                                     300)
    metrics: dict[str, float] = {}
    perf = (lhr.get("categories") or {}).get("performance") or {}
    score = perf.get("score")
    if isinstance(score, int | float):
        metrics["performance_score"] = round(float(score) * 100.0, 1)
    audits = lhr.get("audits") or {}
    for audit, name in AUDITS.items():
        value = (audits.get(audit) or {}).get("numericValue")
        if isinstance(value, int | float):
            metrics[name] = float(value)
    warnings = [one_line(redact(str(w)), 200) for w in lhr.get("runWarnings") or []][:3]
    if warnings:
        details["notes"] = warnings
    if "performance_score" not in metrics:
        return metrics, details, "the report has no performance score (was the performance " \
            "category left out?)"
    return metrics, details, None


def _judge(metrics: dict[str, float]) -> tuple[str, ...]:
    """The playbook's targets this run missed, as reasons."""
    out = []
    for name, (limit, lower_is_better) in TARGETS.items():
        v = metrics.get(name)
        if v is None:
            continue
        if (v > limit) if lower_is_better else (v < limit):
            out.append(f"{name} {v:g} (target {'<' if lower_is_better else '>'} {limit:g})")
    return tuple(out)


class LighthouseProbe:
    """One Lighthouse run (or report read) per check."""

    def __init__(self, target: LighthouseTarget) -> None:
        self.target = target
        self.last: CheckResult | None = None
        self.scratch: Path | None = None  # the current run's TMPDIR

    def command(self, url: str) -> list[str]:
        t = self.target
        flags = " ".join((*CHROME_FLAGS, *t.chrome_flags))
        cmd = [t.lighthouse, url, "--output=json", "--output-path=stdout", "--quiet",
               "--only-categories=performance", f"--chrome-flags={flags}",
               f"--throttling-method={t.throttling}", f"--max-wait-for-load="
               f"{int(max(5.0, t.timeout * 0.6) * 1000)}"]
        if t.form_factor == "desktop":
            cmd.append("--preset=desktop")
        return cmd

    async def check(self) -> CheckResult:
        t = self.target
        started = time.time()
        if t.reports is not None:
            return await asyncio.to_thread(self._read_report, started)
        lock = _run_lock()
        if lock.locked():  # another target's run: wait for the next slot, do not pile up
            return self._busy(started)
        async with lock:
            return await self._run(started)

    def _busy(self, started: float) -> CheckResult:
        t = self.target
        if self.last is not None:
            return self.last
        return CheckResult(t.name, t.kind, Status.UNKNOWN, started, None,
                           error="waiting: another Lighthouse run is in progress (one at a "
                           "time); next try at the next interval")

    def _fail(self, started: float, error: str, run_s: float | None = None) -> CheckResult:
        t = self.target
        details: LighthouseDetails = {} if run_s is None else {"run_s": run_s}
        return CheckResult(t.name, t.kind, Status.DOWN, started, None,
                           error=one_line(redact(error), 400), details=details)

    async def _run(self, started: float) -> CheckResult:
        from console.engine.config.envref import MissingEnv, expand_url

        t = self.target
        assert t.url is not None
        try:
            url = expand_url(t.url)
        except (MissingEnv, ValueError) as exc:
            return self._fail(started, f"url: {exc}")
        cli = shutil.which(t.lighthouse)
        if cli is None:
            return self._fail(started, f"the Lighthouse CLI {t.lighthouse!r} was not found "
                              "(npm install lighthouse; set `lighthouse` to its path)")
        if not os.access(t.chromium, os.X_OK):
            return self._fail(started, f"Chromium not found at {t.chromium} (apt-get install "
                              "chromium; or set `chromium`)")
        # A short TMPDIR of its own (Chromium's singleton socket path must stay under 108
        # bytes), removed after the run whatever happens to it.
        scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="opsconsole-lh-"))
        self.scratch = scratch
        try:
            return await self._run_in(started, cli, url, scratch)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _run_in(self, started: float, cli: str, url: str, scratch: Path) -> CheckResult:
        t = self.target
        env = {**os.environ, "CHROME_PATH": t.chromium, "TMPDIR": str(scratch)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                cli, *self.command(url)[1:], stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=env,
                start_new_session=True)
        except OSError as exc:
            return self._fail(started, f"could not start {cli}: {exc.strerror or exc}")
        try:
            async with asyncio.timeout(max(1.0, t.timeout - 0.5)):
                out, err = await proc.communicate()
        except TimeoutError:
            await self._kill(proc)
            return self._fail(started, f"Lighthouse did not finish within "
                              f"{t.timeout:g}s (killed)")
        except asyncio.CancelledError:
            await self._kill(proc)
            raise
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
            return self._fail(started, f"Lighthouse exited with {proc.returncode}: "
                              + " / ".join(tail), run_s=wall)
        metrics, details, error = parse_report(out)
        metrics.update({"run_s": round(wall, 2), "run_cpu_s": round(cpu, 2)})
        result = self._result(started, metrics, details, error)
        self.last = result
        return result

    def _result(self, started: float, metrics: dict[str, float], details: LighthouseDetails,
                error: str | None) -> CheckResult:
        t = self.target
        if error is not None:
            return CheckResult(t.name, t.kind, Status.DOWN, started, None, error=error,
                               metrics=metrics, details=details)
        reasons = _judge(metrics)
        return CheckResult(t.name, t.kind, Status.DEGRADED if reasons else Status.UP, started,
                           metrics.get("fcp_ms"), reasons=reasons, metrics=metrics,
                           details=details)

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await proc.wait()

    def _read_report(self, started: float) -> CheckResult:
        t = self.target
        assert t.reports is not None
        pattern = os.path.expanduser(t.reports)
        files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
        if not files:
            return self._fail(started, f"no Lighthouse report matches {t.reports}")
        newest = max(files, key=lambda f: os.stat(f).st_mtime)
        try:
            with open(newest, "rb") as fh:
                data = fh.read(50_000_000)
            mtime = os.stat(newest).st_mtime
        except OSError as exc:
            return self._fail(started, f"{newest}: {exc.strerror or exc}")
        metrics, details, error = parse_report(data)
        details.update({"report": one_line(newest, 300), "report_age_s": started - mtime})
        return self._result(started, metrics, details, error)

    async def aclose(self) -> None:
        return None
