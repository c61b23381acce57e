"""Config loading: every mistake is reported at once, at its line, with a useful hint."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from console.engine.config.loader import (
    check_text,
    load_config,
    load_config_text,
    locate_keys,
    validate_file,
)
from console.engine.config.locate import default_config_path, find_config
from console.engine.config.schema import (
    HttpTarget,
    PostgresTarget,
    PrometheusTarget,
    RedisTarget,
    Settings,
)
from console.engine.config.watcher import ConfigWatcher
from console.engine.errors import ConfigError, ConfigIssue

CONFIGS = Path(__file__).parent / "configs"
ENV = {"API_TOKEN": "t0ken", "DATABASE_URL": "postgresql://app@127.0.0.1/test"}


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of `text` containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def issues_of(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    settings, issues = check_text(text, "c.toml", env=ENV if env is None else env)
    assert (settings is None) == bool(issues)
    return issues


def only(issues: list[ConfigIssue]) -> ConfigIssue:
    assert len(issues) == 1, [i.format() for i in issues]
    return issues[0]


HTTP = """
[[targets]]
name = "api"
kind = "http"
url = "https://api.example.com/health"
"""


# -- valid configs ----------------------------------------------------------------------------


def test_full_config_loads_with_every_field() -> None:
    path = CONFIGS / "full.toml"
    assert validate_file(path, env=ENV) == []
    s = load_config(path, env=ENV)
    assert s.console.theme == "opsconsole-dark"
    assert s.console.refresh == 1.0
    api = s.target("api-health")
    assert isinstance(api, HttpTarget)
    assert (api.interval, api.timeout, api.slow) == (30.0, 3.0, 0.3)
    assert api.group == "api"
    assert api.tags == ["prod"]
    assert api.expect_status == [200]
    assert api.down_unless == ['body.details.database.status == "up"']
    # references are checked, never resolved into the settings (probes expand them later)
    assert api.headers == {"Authorization": "Bearer ${API_TOKEN}"}
    db = s.target("db")
    assert isinstance(db, PostgresTarget)
    assert db.dsn == "${DATABASE_URL}"
    cache = s.target("cache")
    assert isinstance(cache, RedisTarget)
    assert cache.timeout == 0.5
    prom = s.target("api-metrics")
    assert isinstance(prom, PrometheusTarget)
    assert sorted(prom.metrics) == ["p95_ms", "rps"]
    assert [p.key for p in s.panels] == ["api-latency", "db-lat", "api-p95"]
    assert s.dashboards[0].panels == ["api-latency", "db-lat", "api-p95"]


def test_load_config_text_and_empty_config() -> None:
    s = load_config_text(HTTP, "inline")
    assert [t.name for t in s.targets] == ["api"]
    assert load_config_text("") == Settings()


# -- single mistakes ----------------------------------------------------------------------------


def test_unknown_key_suggests_the_field_at_its_line() -> None:
    text = HTTP + 'intervall = "30s"\ntimeout = "3s"\n'
    issue = only(issues_of(text))
    assert issue.line == line_of(text, "intervall")
    assert issue.key == 'targets[0] (name "api").intervall'
    assert issue.message == "unknown key"
    assert issue.hint == "did you mean 'interval'?"
    assert issue.format() == (
        f"c.toml:{issue.line}: targets[0] (name \"api\").intervall: unknown key "
        "(hint: did you mean 'interval'?)"
    )


def test_unknown_key_of_another_kind_and_unknown_section() -> None:
    text = "[consol]\ntheme = 'x'\n" + HTTP + 'dsn = "${DATABASE_URL}"\n'
    first, second = issues_of(text)
    assert (first.line, first.key, first.hint) == (1, "consol", "did you mean 'console'?")
    assert second.line == line_of(text, "dsn =")
    assert second.hint == "dsn belongs to postgres targets, not http targets"


def test_bad_duration() -> None:
    text = HTTP + 'timeout = "3 seconds"\n'
    issue = only(issues_of(text))
    assert (issue.line, issue.key) == (line_of(text, "timeout"), 'targets[0] (name "api").timeout')
    assert "is not a duration" in issue.message
    assert issue.hint is not None
    assert "5s" in issue.hint


def test_duration_below_minimum_names_the_limit_in_time_units() -> None:
    issue = only(issues_of('[console]\nrefresh = "100ms"\n'))
    assert (issue.line, issue.key) == (2, "console.refresh")
    assert issue.message == "must be at least 200ms, not 100ms"


def test_bad_kind_lists_kinds_with_did_you_mean() -> None:
    text = '[[targets]]\nname = "web"\nkind = "htp"\nurl = "https://x.example"\n'
    issue = only(issues_of(text))
    assert (issue.line, issue.key) == (3, 'targets[0] (name "web").kind')
    assert issue.message == 'unknown kind "htp"'
    assert issue.hint is not None
    assert issue.hint.startswith("did you mean 'http'?")
    assert all(k in issue.hint for k in ("postgres", "redis", "prometheus"))


def test_missing_kind_is_named() -> None:
    issue = only(issues_of('[[targets]]\nname = "web"\nurl = "https://x.example"\n'))
    assert (issue.line, issue.key, issue.message) == (
        1, 'targets[0] (name "web").kind', "missing required key")
    assert issue.hint is not None
    assert 'kind = "http"' in issue.hint


def test_missing_required_url_points_at_the_table_header() -> None:
    text = '[console]\nbell = true\n\n[[targets]]\nname = "web"\nkind = "http"\ninterval = "5s"\n'
    issue = only(issues_of(text))
    assert issue.line == 4  # the [[targets]] header: the key itself is nowhere to point at
    assert (issue.key, issue.message) == ('targets[0] (name "web").url', "missing required key")
    assert issue.hint == "add url = … to this [[targets]] table"


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://app:hunter2@db.internal/app", "host=db.internal user=app password=hunter2"],
)
def test_literal_password_in_dsn_is_rejected_without_echoing_it(dsn: str) -> None:
    text = f'[[targets]]\nname = "db"\nkind = "postgres"\ndsn = "{dsn}"\n'
    issue = only(issues_of(text))
    assert (issue.line, issue.key) == (4, 'targets[0] (name "db").dsn')
    assert "literal password" in issue.message
    assert "hunter2" not in issue.format()


def test_literal_authorization_header_rejected_at_its_line() -> None:
    inline = HTTP + 'headers = { Accept = "json", Authorization = "Bearer abc123" }\n'
    issue = only(issues_of(inline))
    assert issue.line == line_of(inline, "Authorization")
    assert issue.key == 'targets[0] (name "api").headers.Authorization'
    assert "secret" in issue.message
    assert "${API_TOKEN}" in (issue.hint or "")
    assert "abc123" not in issue.format()

    table = HTTP + '\n[targets.headers]\nAccept = "json"\nauthorization = "Bearer abc123"\n'
    issue = only(issues_of(table))
    assert issue.line == line_of(table, "authorization")
    assert issue.key.endswith(".headers.authorization")


def test_missing_env_var_is_reported_at_its_line() -> None:
    text = HTTP + 'headers = { Authorization = "Bearer ${API_TOKEN}" }\n' + (
        '\n[[targets]]\nname = "db"\nkind = "postgres"\ndsn = "${PG_DSN}"\n')
    issues = issues_of(text, env={"API_TOKEN": "x"})
    issue = only(issues)
    assert (issue.line, issue.key) == (line_of(text, "PG_DSN"), 'targets[1] (name "db").dsn')
    assert issue.message == "environment variable PG_DSN is not set"
    assert issue.hint == "export PG_DSN=… before starting opsconsole"
    assert check_text(text, env={"API_TOKEN": "x", "PG_DSN": "postgresql://a@h/d"})[1] == []


def test_a_whole_value_reference_to_an_empty_variable_is_reported() -> None:
    """`dsn = "${OPS_STATE_DSN}"` with the variable set to "" would reach a driver as no
    DSN at all (its defaults: another database); a reference inside a value may be empty."""
    text = HTTP + 'headers = { Authorization = "Bearer ${API_TOKEN}" }\n' + (
        '\n[state]\nbackend = "postgres"\ndsn = "${OPS_STATE_DSN}"\n')
    issue = only(issues_of(text, env={"API_TOKEN": "", "OPS_STATE_DSN": " "}))
    assert (issue.line, issue.key) == (line_of(text, "OPS_STATE_DSN"), "state.dsn")
    assert issue.message == "environment variable OPS_STATE_DSN is empty"
    assert issues_of(text, env={"API_TOKEN": "", "OPS_STATE_DSN": "postgresql://h/d"}) == []


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[[targets]]\nname = "db"\nkind = "postgres"\ndsn = "${OPSC_TEST_DSN}"\n'
    monkeypatch.delenv("OPSC_TEST_DSN", raising=False)
    assert "OPSC_TEST_DSN" in only(check_text(text)[1]).message
    monkeypatch.setenv("OPSC_TEST_DSN", "postgresql://a@127.0.0.1/test")
    settings = load_config_text(text)
    assert settings.target("db").dsn == "${OPSC_TEST_DSN}"  # type: ignore[union-attr]


def test_duplicate_target_names() -> None:
    text = HTTP + HTTP.replace("https://api", "https://api2")
    issue = only(issues_of(text))
    second = [n for n, line in enumerate(text.splitlines(), 1) if 'name = "api"' in line][1]
    assert (issue.line, issue.key) == (second, 'targets[1] (name "api").name')
    assert issue.message == 'target name "api" is already used'
    assert issue.hint is not None
    assert "targets[0] at line 3" in issue.hint


def test_panel_and_dashboard_references_are_located() -> None:
    text = HTTP + (
        '\n[[panels]]\ntitle = "API latency"\ntarget = "apj"\n'
        '\n[[panels]]\ntitle = "Fine"\ntarget = "api"\n'
        '\n[[dashboards]]\nname = "Main"\npanels = ["fine", "api-latncy"]\n'
    )
    p, d = issues_of(text)
    assert (p.line, p.key, p.message) == (
        line_of(text, '"apj"'), 'panels[0] (title "API latency").target', 'unknown target "apj"')
    assert p.hint == "did you mean 'api'?"
    assert (d.line, d.key, d.message) == (
        line_of(text, "api-latncy"), 'dashboards[0] (name "Main").panels[1]',
        'unknown panel "api-latncy"')
    assert d.hint is not None
    assert d.hint.startswith("did you mean 'api-latency'?")


def test_every_bad_condition_and_status_is_located_at_its_own_item() -> None:
    text = HTTP + (
        "expect_status = [200, 'abc', 1000]\n"
        "down_unless = [\n"
        "  'status == 200',\n"
        "  'body.x =! 3',\n"
        "  'bogus',\n"
        "]\n"
    )
    issues = issues_of(text)
    got = [(i.line, i.key.split(".", 1)[1]) for i in issues]
    assert got == [
        (line_of(text, "expect_status"), "expect_status[1]"),
        (line_of(text, "expect_status"), "expect_status[2]"),
        (line_of(text, "=!"), "down_unless[1]"),
        (line_of(text, "bogus"), "down_unless[2]"),
    ]
    assert "1000 is not an HTTP status code" in issues[1].message
    assert "'=!'" in issues[2].message


def test_every_bad_prometheus_expression_is_located() -> None:
    text = (
        '[[targets]]\nname = "m"\nkind = "prometheus"\nurl = "http://127.0.0.1:9100/metrics"\n'
        "[targets.metrics]\n"
        'rps = "rate(http_requests_total[1m])"\n'
        'ok = "rate(http_requests_total)"\n'
        'bad = "rate("\n'
    )
    issues = issues_of(text)
    assert [(i.line, i.key) for i in issues] == [
        (line_of(text, "rps ="), 'targets[0] (name "m").metrics.rps'),
        (line_of(text, "bad ="), 'targets[0] (name "m").metrics.bad'),
    ]


def test_targets_written_as_a_single_table_get_a_hint() -> None:
    issue = only(issues_of('[targets]\nname = "x"\n'))
    assert (issue.line, issue.key) == (1, "targets")
    assert issue.hint is not None
    assert "[[targets]]" in issue.hint


# -- many mistakes at once ----------------------------------------------------------------------


def test_every_error_in_a_file_is_reported_at_its_line() -> None:
    path = CONFIGS / "many_errors.toml"
    text = path.read_text()
    issues = validate_file(path, env={})
    got = [(i.line, i.key, i.message) for i in issues]

    def at(marker: str) -> int:
        return line_of(text, f"# {marker}:")

    expected = [
        (at("E1"), "console.refresh", "must be at least 200ms"),
        (at("E2"), 'targets[0] (name "api").intervall', "unknown key"),
        (at("E3"), 'targets[0] (name "api").timeout', "is not a duration"),
        (at("E4"), 'targets[0] (name "api").expect_status[1]', "'abc'"),
        (at("E5"), 'targets[1] (name "web").kind', 'unknown kind "htp"'),
        (at("E6") - 2, 'targets[2] (name "db").dsn', "missing required key"),
        (at("E7"), 'targets[3] (name "api").name', "already used"),
        (at("E8"), 'targets[3] (name "api").url', "REDIS_URL is not set"),
        (at("E9"), 'panels[0] (title "API latency").target', 'unknown target "apii"'),
        (at("E10"), 'dashboards[0] (name "Overview").panels[1]', 'unknown panel "api-latncy"'),
    ]
    assert len(issues) == len(expected), [i.format() for i in issues]
    for (line, key, message), (want_line, want_key, want_msg) in zip(got, expected, strict=True):
        assert (line, key) == (want_line, want_key), (line, key, message)
        assert want_msg in message
    assert [i.line for i in issues] == sorted(i.line or 0 for i in issues)
    assert all(i.file == str(path) for i in issues)

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.issues == issues
    assert str(caught.value).count("\n") == len(issues) - 1


def test_validate_command_reports_all_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from console.cli import main

    assert main(["validate", "--config", str(CONFIGS / "many_errors.toml")]) == 1
    err = capsys.readouterr().err
    assert "10 problems" in err
    assert "did you mean 'interval'?" in err
    assert "many_errors.toml:" in err


def test_rule_globs_kinds_and_inhibits_must_name_something() -> None:
    text = HTTP + (
        '\n[[targets]]\nname = "api-eu"\nkind = "http"\nurl = "https://eu.example.com/"\n'
        '\n[[rules]]\nname = "eu-down"\nexpr = "down"\n'
        'targets = [\n  "api*",\n  "apii-eu",\n]\n'
        'inhibits = ["target-down", "eu-slow", "eu-*", "nothing-*"]\n'
        '\n[[rules]]\nname = "eu-slw"\nexpr = "p95_ms > 1"\nkinds = ["postgres"]\n'
        '\n[[rules]]\nname = "mixed"\nexpr = "down"\nkinds = ["redis", "http"]\n'
        'targets = ["api-e?"]\n'
        '\n[[rules]]\nname = "wrongkind"\nexpr = "down"\nkinds = ["log"]\n'
        'targets = ["api"]\n'
        '\n[[rules]]\nname = "typo"\nexpr = "down"\ntargets = ["web"]\n'
        '\n[[rules]]\nname = "parked"\nexpr = "down"\nenabled = false\ntargets = ["gone"]\n'
    )
    issues = issues_of(text)
    got = [(i.line, i.key, i.message, i.hint) for i in issues]
    assert got == [
        (line_of(text, '"apii-eu"'), 'rules[0] (name "eu-down").targets[1]',
         'targets pattern "apii-eu" matches no target', "did you mean 'api-eu'?"),
        (line_of(text, '"eu-slow",'), 'rules[0] (name "eu-down").inhibits[1]',
         'inhibits unknown rule "eu-slow"', "did you mean 'eu-slw'?"),
        # inhibits entries are patterns: "eu-*" names rules, "nothing-*" none
        (line_of(text, '"nothing-*"]'), 'rules[0] (name "eu-down").inhibits[3]',
         'inhibits unknown rule "nothing-*"', got[2][3]),
        (line_of(text, '["postgres"]'), 'rules[1] (name "eu-slw").kinds[0]',
         "no postgres target is configured", "kinds of your targets: http"),
        (line_of(text, '["redis", "http"]'), 'rules[2] (name "mixed").kinds[0]',
         "no redis target is configured", "kinds of your targets: http"),
        (line_of(text, '["log"]'), 'rules[3] (name "wrongkind").kinds[0]',
         "no log target is configured", "kinds of your targets: http"),
        (line_of(text, 'targets = ["api"]'), 'rules[3] (name "wrongkind").targets[0]',
         'targets pattern "api" matches only targets that are not log: api',
         "a rule applies to the targets matching both its targets and its kinds"),
        (line_of(text, 'targets = ["web"]'), 'rules[4] (name "typo").targets[0]',
         'targets pattern "web" matches no target',
         'targets: api, api-eu; patterns may use * and ? (e.g. "api*")'),
    ]
    assert got[2][3].startswith("rules: ")  # no near name: the rules are listed
    # each pattern or kind that selects nothing is dead config, even when a sibling in the
    # same list selects something ("api*" above, "http" in "mixed")
    assert sum("mixed" in i.key for i in issues) == 1


def test_inhibits_of_shipped_rules_and_silent_default_globs(tmp_path: Path) -> None:
    text = HTTP + (
        '\n[[rules]]\nname = "api-hard-down"\nexpr = "down"\ntargets = ["api"]\n'
        'inhibits = ["target-down", "latency-p95-slw", "eror-rate-high"]\n'
    )
    # the shipped rules are known names; their own globs (*payment*, *webhook*) match
    # nothing in this config, which is no error
    issues = issues_of(text)
    line = line_of(text, "inhibits")
    assert [(i.line, i.key, i.message, i.hint) for i in issues] == [
        (line, 'rules[0] (name "api-hard-down").inhibits[1]',
         'inhibits unknown rule "latency-p95-slw"', "did you mean 'latency-p95-slow'?"),
        (line, 'rules[0] (name "api-hard-down").inhibits[2]',
         'inhibits unknown rule "eror-rate-high"', "did you mean 'error-rate-high'?"),
    ]
    off = issues_of(text + "\n[alerting]\ndefault_rules = false\n")
    assert [i.message for i in off] == ['inhibits unknown rule "target-down"',
                                        'inhibits unknown rule "latency-p95-slw"',
                                        'inhibits unknown rule "eror-rate-high"']
    assert "default_rules = false turns the shipped rules off" in (off[0].hint or "")
    good = HTTP + ('\n[[rules]]\nname = "x"\nexpr = "down"\ntargets = ["a*"]\n'
                   'kinds = ["http"]\ninhibits = ["no-data"]\n')
    assert issues_of(good) == []

    from console.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["validate", "--config", str(cfg)]) == 1


# -- TOML syntax ---------------------------------------------------------------------------------


def test_toml_syntax_error_has_line_and_column() -> None:
    text = '[console]\ntheme = "x"\nbell = maybe\n'
    issue = only(issues_of(text))
    assert issue.line == 3
    assert issue.key == ""
    assert issue.message == "TOML syntax error: invalid value at column 8"
    assert issue.hint is not None
    assert "quotes" in issue.hint

    unquoted = '[console]\nrefresh = 5s\n'
    issue = only(issues_of(unquoted))
    assert issue.line == 2
    assert "column 12" in issue.message
    assert issue.hint is not None
    assert 'refresh = "5s"' in issue.hint


def test_toml_duplicate_key_and_unclosed_string_are_located() -> None:
    dup = HTTP + 'interval = "5s"\ntimeout = "1s"\ninterval = "6s"\n\n[console]\n'
    issue = only(issues_of(dup))
    assert issue.line == len(HTTP.splitlines()) + 3  # tomllib only says "end of document"
    assert issue.key == "targets[0].interval"

    unclosed = '[console]\ntheme = "dark\nbell = true\n'
    issue = only(issues_of(unclosed))
    assert issue.line == 2
    assert issue.message == "TOML syntax error: unterminated string"

    unclosed = '[console]\ntheme = "dark"\n\n[[targets]]\ndescription = """\nname = "x"\n'
    issue = only(issues_of(unclosed))
    assert issue.line == 5
    assert issue.message == "TOML syntax error: unterminated string"
    assert issue.hint is not None


# -- the line locator ----------------------------------------------------------------------------


def test_locator_handles_multiline_values_dotted_keys_and_inline_tables() -> None:
    text = (
        "top = 1\n"                                   # 1
        '[a]\n'                                       # 2
        "s = '''\n[[fake]]\nx = 1\n'''\n"             # 3-6
        'b.c = "q # not a comment"  # comment\n'      # 7
        '"quoted.key" = { x = 1, y = { z = [1,\n2] } }\n'  # 8-9
        "[[arr]]\n"                                   # 10
        "v = [\n  { k = 1 },\n  { k = 2 },\n]\n"      # 11-14
        "[[arr]]\n"                                   # 15
        "[arr.sub]\n"                                 # 16
        "w = 3\n"                                     # 17
    )
    lines = locate_keys(text).lines
    assert lines[("top",)] == 1
    assert lines[("a",)] == 2
    assert lines[("a", "s")] == 3
    assert ("fake",) not in lines
    assert ("a", "x") not in lines
    assert lines[("a", "b", "c")] == 7
    assert lines[("a", "b")] == 7
    assert lines[("a", "quoted.key", "y", "z", 1)] == 9
    assert lines[("arr", 0)] == 10
    assert lines[("arr", 0, "v", 1, "k")] == 13
    assert lines[("arr", 1)] == 15
    assert lines[("arr", 1, "sub", "w")] == 17
    assert locate_keys(text).line_of(("arr", 1, "sub", "missing")) == 16


# -- finding the file ----------------------------------------------------------------------------


def test_find_config_without_any_file_says_how_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSCONSOLE_CONFIG", str(tmp_path / "none" / "config.toml"))
    assert default_config_path() == tmp_path / "none" / "config.toml"
    with pytest.raises(ConfigError) as caught:
        find_config(None)
    text = str(caught.value)
    assert "no config file found at" in text
    assert str(tmp_path / "none") in text
    assert "opsconsole demo --print-config >" in text
    assert "--config FILE" in text


def test_find_config_prefers_cli_path_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "default.toml"
    default.write_text(HTTP)
    monkeypatch.setenv("OPSCONSOLE_CONFIG", str(default))
    assert find_config(None) == default
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    assert find_config(str(explicit)) == explicit
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        find_config(tmp_path)
    fifo = tmp_path / "fifo.toml"  # it said "does not exist", with a hint to overwrite it
    os.mkfifo(fifo)
    for special in (fifo, Path("/dev/null")):
        with pytest.raises(ConfigError, match="is not a regular file") as err:
            find_config(special)
        assert "print-config" not in str(err.value.issues[0].format())


def test_default_path_is_the_user_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from platformdirs import user_config_dir

    monkeypatch.delenv("OPSCONSOLE_CONFIG", raising=False)
    assert default_config_path() == Path(user_config_dir("opsconsole")) / "config.toml"


def test_unreadable_and_non_utf8_files_are_issues(tmp_path: Path) -> None:
    assert "cannot read" in only(validate_file(tmp_path / "gone.toml")).message
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[console]\ntheme = "caf\xe9"\n')
    issue = only(validate_file(bad))
    assert issue.line == 2
    assert "UTF-8" in issue.message


# -- watching the file ---------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Replace the file's content in place, as most editors do."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


async def _wait_for(cond: Callable[[], bool], limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        assert loop.time() < deadline, "timed out waiting for the watcher"
        await asyncio.sleep(0.01)


CACHE = '[[targets]]\nname = "cache"\nkind = "redis"\nurl = "redis://127.0.0.1:6379"\n'


async def test_watcher_applies_good_edits_and_keeps_last_good_on_broken(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    _write(path, CACHE + 'interval = "10s"\n')
    changes: list[Settings] = []
    errors: list[ConfigError] = []
    watcher = ConfigWatcher(path, changes.append, errors.append, interval=0.05, env={})
    await watcher.start()
    try:
        assert watcher.last_good is not None
        assert watcher.last_good.targets[0].interval == 10.0
        assert changes == []
        assert errors == []

        _write(path, CACHE + 'interval = "20s"\n')  # same size as before: seen by content
        await _wait_for(lambda: len(changes) == 1)
        assert changes[0].targets[0].interval == 20.0
        assert watcher.last_good is changes[0]

        _write(path, CACHE + 'interval = "20s"\nintervall = "3s"\n')  # a broken edit
        await _wait_for(lambda: len(errors) == 1)
        assert [i.message for i in errors[0].issues] == ["unknown key"]
        assert errors[0].issues[0].line == 6
        assert watcher.last_good is changes[0]
        assert len(changes) == 1

        await asyncio.sleep(0.3)  # still broken: reported once, not at every poll
        assert len(errors) == 1
        assert len(changes) == 1

        _write(path, CACHE + 'interval = "45s"\ntimeout = "2s"\n')  # fixed
        await _wait_for(lambda: len(changes) == 2)
        assert (changes[1].targets[0].interval, changes[1].targets[0].timeout) == (45.0, 2.0)
        assert watcher.last_good is changes[1]
        assert len(errors) == 1

        _write(path, "\n  \n")  # emptied (a truncating save): rejected, not "no targets"
        await _wait_for(lambda: len(errors) == 2)
        assert [i.message for i in errors[1].issues] == ["the file is empty"]
        assert watcher.last_good is changes[1]
        assert len(changes) == 2
        _write(path, CACHE + 'interval = "45s"\ntimeout = "2s"\n')  # content again
        await _wait_for(lambda: len(changes) == 3)
    finally:
        await watcher.stop()

    _write(path, CACHE + 'interval = "50s"\n')  # stopped: no more callbacks
    await asyncio.sleep(0.3)
    assert len(changes) == 3


async def test_watcher_keeps_the_callers_copy_of_an_unchanged_config(tmp_path: Path) -> None:
    """One Settings in memory, not two: the runtime's copy is last_good while the file
    still says the same; a file edited since the caller read it is applied as an edit."""
    path = tmp_path / "config.toml"
    _write(path, CACHE + 'interval = "10s"\n')
    current = load_config(path, env={})
    changes: list[Settings] = []
    watcher = ConfigWatcher(path, changes.append, lambda _: None, interval=0.05, env={})
    await watcher.start(current=current)
    try:
        assert watcher.last_good is current
        await watcher.poll()
        await watcher.poll()
        assert changes == []
    finally:
        await watcher.stop()
    _write(path, CACHE + 'interval = "20s"\n')  # edited after the caller read it
    watcher = ConfigWatcher(path, changes.append, lambda _: None, interval=0.05, env={})
    await watcher.start(current=current)
    try:
        assert watcher.last_good is current  # what runs, until the edit is applied
        await _wait_for(lambda: len(changes) == 1)
        assert changes[0].targets[0].interval == 20.0
        assert watcher.last_good is changes[0]
    finally:
        await watcher.stop()


async def test_watcher_handles_replace_by_rename_and_fix_back_to_same(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    good = CACHE + 'interval = "10s"\n'
    _write(path, good)
    changes: list[Settings] = []
    errors: list[ConfigError] = []
    watcher = ConfigWatcher(path, changes.append, errors.append, interval=0.05, env={})
    await watcher.start()
    try:
        tmp = tmp_path / "config.toml.swp"
        _write(tmp, good + "[console\n")
        os.replace(tmp, path)  # atomic save: new inode
        await _wait_for(lambda: len(errors) == 1)
        assert errors[0].issues[0].message.startswith("TOML syntax error")

        _write(path, good)  # back to the same settings: still announced, the error is over
        await _wait_for(lambda: len(changes) == 1)
        assert changes[0] == watcher.last_good
        assert changes[0].targets[0].interval == 10.0
    finally:
        await watcher.stop()


async def test_watcher_never_applies_a_half_written_file(tmp_path: Path) -> None:
    """An empty or truncated file can be valid; seen at one poll only, it must not be applied."""
    path = tmp_path / "config.toml"
    full = CACHE + 'interval = "10s"\n\n' + CACHE.replace('"cache"', '"cache2"')
    _write(path, full)
    changes: list[Settings] = []
    errors: list[ConfigError] = []
    watcher = ConfigWatcher(path, changes.append, errors.append, interval=3600, env={})
    await watcher.start()  # polled by hand below: the task sleeps for an hour
    try:
        _write(path, "")  # an editor caught after truncating, before writing
        await watcher.poll()
        _write(path, full[:60])  # half-way: also valid TOML, one target fewer
        await watcher.poll()
        _write(path, full.replace('"10s"', '"15s"'))  # the finished edit
        await watcher.poll()
        assert changes == []
        assert errors == []
        assert watcher.last_good is not None
        assert len(watcher.last_good.targets) == 2

        await watcher.poll()  # read the same twice: settled, applied once
        await watcher.poll()
        assert [[t.interval for t in s.targets] for s in changes] == [[15.0, 10.0]]
        assert errors == []

        path.unlink()  # a deleted file is reported once and the last good config stays
        for _ in range(3):
            await watcher.poll()
        assert len(errors) == 1
        assert "cannot read the config" in errors[0].issues[0].message
        assert watcher.last_good is changes[0]
    finally:
        await watcher.stop()


def test_the_registry_of_target_kinds_is_the_one_list_every_other_reads() -> None:
    """TARGET_KINDS (from the Target union) names what model.TargetKind names, and the kinds
    each view and details accessor knows are kinds of it: adding a kind in one place only
    fails here, not at a user's config."""
    from typing import get_args

    from console.engine.config.schema import TARGET_KINDS
    from console.engine.incidents.links import DB_TABS
    from console.engine.model import (
        BREAKDOWN_KINDS,
        DATABASE_KINDS,
        CheckResult,
        Status,
        TargetKind,
    )

    assert list(TARGET_KINDS) == list(get_args(TargetKind))
    assert set(DB_TABS) == set(DATABASE_KINDS) <= set(TARGET_KINDS)
    assert set(BREAKDOWN_KINDS) <= set(TARGET_KINDS)
    issue = only(issues_of('[[targets]]\nname = "x"\nkind = "htp"\nurl = "http://a"\n'))
    assert "kinds: " + ", ".join(TARGET_KINDS) in str(issue.hint)  # the loader's hint
    r = CheckResult("db", "postgres", Status.UP, 0.0, 1.0, details={"notes": ["n"]})
    assert r.details_of("postgres").get("notes") == ["n"] == r.notes
    assert r.details_of("redis") == {}  # another kind's shape is never read into
    assert r.breakdowns is None


def test_toml_nested_too_deep_is_a_config_problem_not_a_traceback(tmp_path: Path) -> None:
    """`x = [[[…]]]` 500 deep: `validate`, `run --headless` and the console printed a
    RecursionError traceback (exit 1), and a reload into it was ignored without a word."""
    from console.engine.config.locate import may_share_state

    text = '[[targets]]\nname = "a"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n' \
           "x = " + "[" * 500 + "]" * 500 + "\n"
    settings, issues = check_text(text, "deep.toml")
    assert settings is None
    assert [i.format() for i in issues] == [
        "deep.toml: TOML syntax error: arrays or tables nested too deeply"]
    path = tmp_path / "deep.toml"
    path.write_text(text)
    assert may_share_state(path) is False  # read by every journal command first
    with pytest.raises(ConfigError):
        load_config(path)


def test_repeated_target_names_are_each_named_once() -> None:
    """Counted in one pass (a count per name made 16,000 targets take 13 s)."""
    targets = "".join(f'[[targets]]\nname = "{n}"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n'
                      for n in ("api", "web", "api", "db", "web", "api"))
    settings, issues = check_text(targets, "c.toml")
    assert settings is None
    said = sorted((i.key, i.message) for i in issues)
    assert said == [('targets[2] (name "api").name', 'target name "api" is already used'),
                    ('targets[4] (name "web").name', 'target name "web" is already used'),
                    ('targets[5] (name "api").name', 'target name "api" is already used')]
    from console.engine.config.schema import Settings

    with pytest.raises(ValueError, match="target names must be unique; repeated: api, web"):
        Settings.model_validate({"targets": [
            {"name": n, "kind": "http", "url": "http://127.0.0.1:9/"}
            for n in ("api", "web", "api", "db", "web", "api")]})
