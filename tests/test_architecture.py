"""The layering holds: the engine imports no Textual/Rich; packages resolve inside the project."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import console.engine

ROOT = Path(__file__).resolve().parents[1]


def _engine_modules() -> list[str]:
    names = ["console.engine"]
    for info in pkgutil.walk_packages(console.engine.__path__, "console.engine."):
        names.append(info.name)
    return names


def test_engine_imports_no_textual_or_rich() -> None:
    modules = _engine_modules()
    assert "console.engine.scheduler" in modules
    assert "console.engine.probes.http" in modules
    # httpx imports Rich for its command-line entry point when `click` is installed (as
    # import-linter installs it for `make lint`); what httpx alone loads is not ours.
    code = (
        "import importlib, sys\n"
        "import httpx\n"
        "ui = lambda: {m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')}\n"
        "before = ui()\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(ui() - before) + sorted(m for m in before if m.startswith('textual'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"engine pulled in: {out.stdout.strip()}"


def test_top_level_packages_resolve_inside_project() -> None:
    import themes
    import widgets

    for mod in (console.engine, widgets, themes):
        assert Path(mod.__file__).resolve().is_relative_to(ROOT), mod.__file__


def test_theme_css_ships_with_package() -> None:
    import themes

    assert themes.CSS_PATHS, "themes must name their .tcss files"
    for path in themes.CSS_PATHS:
        assert Path(path).is_file()
        assert str(path).endswith(".tcss")


def test_one_registry_of_target_kinds() -> None:
    """Rules, the schema and the scheduler name target kinds from one place."""
    from typing import get_args

    from console.engine.config.schema import TARGET_KINDS, AnyTarget
    from console.engine.model import TargetKind

    assert set(get_args(TargetKind)) == set(TARGET_KINDS)
    assert set(get_args(AnyTarget)) == set(TARGET_KINDS.values())


def test_validate_loads_no_client_library(tmp_path: Path) -> None:
    """`validate` sends nothing: checking panels and runbook links against every kind of
    target reads the metric names from probes/catalog.py, never a probe with its client."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[[targets]]\nname = "api"\nkind = "http"\nurl = "http://127.0.0.1:9/health"\n'
        '[[targets]]\nname = "db"\nkind = "postgres"\ndsn = "postgresql://u@127.0.0.1:9/d"\n'
        '[[targets]]\nname = "cache"\nkind = "redis"\nurl = "redis://127.0.0.1:9"\n'
        f'[[targets]]\nname = "logs"\nkind = "log"\npath = "{tmp_path / "app.log"}"\n'
        '[[targets]]\nname = "backup"\nkind = "heartbeat"\nperiod = "1h"\n')
    code = (
        "import sys\n"
        "from console.cli import main\n"
        f"rc = main(['validate', '--config', {str(cfg)!r}])\n"
        "libs = ('aiohttp', 'httpx', 'asyncpg', 'redis', 'numpy', 'textual')\n"
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & set(libs)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 []", out.stdout + out.stderr


def _modules_after(argv: list[str], libs: tuple[str, ...]) -> tuple[int, list[str], str]:
    """Run `opsconsole ARGV` in a fresh interpreter; (exit code, which of `libs` (module
    names, or their packages) it had loaded by the end, its stdout)."""
    code = (
        "import sys\n"
        "from console.cli import main\n"
        f"rc = main({argv!r})\n"
        f"libs = {libs!r}\n"
        "hit = sorted(l for l in libs if any(m == l or m.startswith(l + '.') "
        "for m in sys.modules))\n"
        "print('LOADED', rc, ','.join(hit))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    last = out.stdout.splitlines()[-1].split(" ", 2)
    assert last[0] == "LOADED", out.stdout + out.stderr
    return int(last[1]), [m for m in last[2].split(",") if m], out.stdout


def test_check_once_loads_no_numpy_nor_the_store(http_url: str) -> None:
    """One round of checks needs no metric history: `check --once` keeps none, so it pays
    for neither numpy nor the store at start-up (bench/bench_cli.py); and URLs given on the
    command line need no config models, so no pydantic (console/cli/plaincheck.py)."""
    rc, loaded, stdout = _modules_after(
        ["check", "--once", "--json", f"{http_url}/health"],
        ("numpy", "console.engine.storage.store", "console.engine.alerting.rules",
         "pydantic", "console.engine.config.schema"))
    assert rc == 0, stdout
    assert '"uptime_pct": 100.0' in stdout  # the figures still come, from the results
    assert '"p95_ms": ' in stdout
    assert '"p95_ms": null' not in stdout
    assert loaded == []


def test_alerts_without_a_remote_source_loads_no_remote_client(
        tmp_path: Path, http_url: str) -> None:
    """`alerts` reads the team's Alertmanagers and Prometheus only for a config that names
    one; without, their clients are not imported."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[targets]]\nname = "api"\nkind = "http"\nurl = "{http_url}/health"\n')
    remote = ("console.engine.alerting.remote", "console.engine.alerting.alertmanager",
              "console.engine.probes.promapi")
    rc, loaded, stdout = _modules_after(["alerts", "--json", "--config", str(cfg)], remote)
    assert rc == 0, stdout
    assert '"alerts": []' in stdout
    assert loaded == []
    # and with an Alertmanager named, they are (the same command, the other branch)
    cfg.write_text(cfg.read_text() + '[[alerting.alertmanagers]]\nname = "team"\n'
                   'urls = ["http://127.0.0.1:9"]\n')
    _, loaded, _ = _modules_after(["alerts", "--json", "--config", str(cfg)], remote)
    assert loaded == sorted(remote)


def test_the_journal_readers_load_no_numpy_nor_the_alert_lifecycle(tmp_path: Path) -> None:
    """`report` and `incidents` read files: the journal, alerts.json and its change log, the
    alert history. Reading the change log once pulled in the alert lifecycle, and with it the
    rules and numpy (`report` went from 1.01x to 1.32x the bare script in bench_cli)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "journal.jsonl").touch()
    (data / "alerts.json").write_text('{"version": 1, "alerts": []}')
    for argv in (["report", "--json", "--data-dir", str(data)],
                 ["incidents", "--json", "--all", "--data-dir", str(data)]):
        rc, loaded, stdout = _modules_after(
            argv, ("numpy", "console.engine.alerting.lifecycle", "console.engine.alerting.rules"))
        assert rc == 0, stdout
        assert loaded == [], (argv, loaded)
