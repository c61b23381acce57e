"""Find, load and validate the TOML config, reporting every problem with file, line, key and hint.

tomllib gives values but no positions, so a small locator (`locate_keys`) re-reads the source
and maps each key path to its line; pydantic errors, cross-reference errors and missing
`${ENV}` variables are all turned into `ConfigIssue`s located through it, so an operator sees
every mistake in one pass instead of fixing them one at a time.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, BeforeValidator, ValidationError

from console.engine.config.envref import ENV_REF, missing_refs
from console.engine.config.locate import toml_loads
from console.engine.config.schema import TARGET_KINDS, Settings
from console.engine.errors import ConfigError, ConfigIssue
from console.engine.lang.durations import parse_duration
from console.engine.model import TargetKind
from console.engine.text.fmt import format_duration

log = logging.getLogger(__name__)


Path_ = tuple[str | int, ...]

# -- loading ------------------------------------------------------------------------------------


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """The validated Settings in `path`; raises ConfigError carrying every issue found."""
    text, issues = _read(Path(path))
    if text is None:
        raise ConfigError(issues)
    return load_config_text(text, str(path), env=env)


def validate_file(path: Path, *, env: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    """Every issue in the config at `path`, in file order; [] when it is valid."""
    return check_file(path, env=env)[1]


def check_file(path: Path, *, env: Mapping[str, str] | None = None
               ) -> tuple[Settings | None, list[ConfigIssue]]:
    """The config at `path` and every issue in it, in file order (settings None unless
    there are none)."""
    text, issues = _read(Path(path))
    if text is None:
        return None, issues
    return check_text(text, str(path), env=env)


def load_config_text(
    text: str, filename: str = "<config>", *, env: Mapping[str, str] | None = None
) -> Settings:
    """The validated Settings in TOML `text`; raises ConfigError carrying every issue found."""
    settings, issues = check_text(text, filename, env=env)
    if issues or settings is None:
        raise ConfigError(issues or [ConfigIssue(filename, None, "", "invalid config")])
    return settings


def _read(path: Path) -> tuple[str | None, list[ConfigIssue]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [ConfigIssue(str(path), None, "",
                                  f"cannot read the config: {exc.strerror or exc}")]
    return decode_config(raw, str(path))


def decode_config(raw: bytes, filename: str) -> tuple[str | None, list[ConfigIssue]]:
    try:
        # utf-8-sig: tolerate the BOM some Windows editors put in front of a file.
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [ConfigIssue(filename, line, "", "the file is not valid UTF-8 text",
                                  "save it as UTF-8")]


def check_text(
    text: str, filename: str = "<config>", *, env: Mapping[str, str] | None = None
) -> tuple[Settings | None, list[ConfigIssue]]:
    """Parse and validate TOML `text`: (Settings or None, every issue sorted by line)."""
    env = os.environ if env is None else env
    try:
        data = toml_loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_syntax_issue(exc, text, filename)]
    loc = locate_keys(text)
    ctx = _Ctx(filename, data, loc)

    settings: Settings | None = None
    schema_errors: list[dict[str, Any]] = []
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        schema_errors = [dict(e) for e in exc.errors(include_url=False)]

    reference_issues = _reference_issues(ctx) + _rule_issues(ctx)
    issues: list[ConfigIssue] = []
    for err in schema_errors:
        if not err["loc"] and reference_issues:
            continue  # Settings' own cross-reference check; ours says the same, located
        issues += _schema_issues(ctx, err)
    issues += reference_issues
    issues += _env_issues(ctx, env)

    issues = list(dict.fromkeys(issues))  # the same problem reached two ways counts once
    issues.sort(key=lambda i: (i.line is None, i.line or 0))
    return (None if issues else settings), issues


# -- the line locator ---------------------------------------------------------------------------

_PUNCT = "[]{}=,"
_BARE_STOP = set(" \t\r\n#\"'") | set(_PUNCT)


@dataclass(slots=True)
class _Tok:
    kind: str  # one of _PUNCT, "nl", "str", "word"
    text: str
    line: int
    pos: int


@dataclass(slots=True)
class Located:
    """Where each key path of a TOML source sits: `lines[("targets", 2, "url")] == 17`."""

    lines: dict[Path_, int] = field(default_factory=dict)
    headers: dict[Path_, str] = field(default_factory=dict)  # table path -> "[[targets]]"
    repeats: list[tuple[Path_, int]] = field(default_factory=list)  # keys defined twice
    unterminated: int | None = None  # line where an unclosed string starts

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, else of its nearest located parent (e.g. its table header)."""
        for k in range(len(path), 0, -1):
            line = self.lines.get(path[:k])
            if line is not None:
                return line
        return None

    def table_of(self, path: Path_) -> tuple[Path_, str] | None:
        for k in range(len(path), 0, -1):
            if path[:k] in self.headers:
                return path[:k], self.headers[path[:k]]
        return None


def _tokenize(text: str, found: Located) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
        elif c == "\n":
            toks.append(_Tok("nl", c, line, i))
            line += 1
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "\"'":
            start, start_line = i, line
            triple = text.startswith(c * 3, i)
            j = i + (3 if triple else 1)
            closed = False
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if triple and text.startswith(c * 3, j):
                    j += 3
                    extra = 0
                    while j < n and text[j] == c and extra < 2:  # """a"""" ends with a quote
                        j += 1
                        extra += 1
                    closed = True
                    break
                if not triple and text[j] == c:
                    j += 1
                    closed = True
                    break
                if not triple and text[j] == "\n":
                    break
                j += 1
            if not closed and found.unterminated is None:
                found.unterminated = start_line
            raw = text[start:j]
            toks.append(_Tok("str", raw, start_line, start))
            line += raw.count("\n")
            i = j
        elif c in _PUNCT:
            toks.append(_Tok(c, c, line, i))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _BARE_STOP:
                j += 1
            toks.append(_Tok("word", text[i:j], line, i))
            i = j
    return toks


def _key_string(raw: str) -> str:
    try:
        return str(tomllib.loads(f"k = {raw}")["k"])
    except (tomllib.TOMLDecodeError, KeyError):
        return raw.strip("\"'")


class _Locator:
    """A forgiving recursive-descent reader of already-valid TOML that only tracks positions."""

    def __init__(self, text: str) -> None:
        self.found = Located()
        self.toks = _tokenize(text, self.found)
        self.p = 0
        self.arrays: dict[Path_, int] = {}

    def peek(self, k: int = 0) -> _Tok | None:
        q = self.p + k
        return self.toks[q] if q < len(self.toks) else None

    def record(self, path: Path_, line: int) -> None:
        for k in range(1, len(path)):
            self.found.lines.setdefault(path[:k], line)
        if path in self.found.lines:
            self.found.repeats.append((path, line))
        else:
            self.found.lines[path] = line

    def skip_to_eol(self) -> None:
        while (t := self.peek()) is not None and t.kind != "nl":
            self.p += 1

    def skip_nl(self) -> None:
        while (t := self.peek()) is not None and t.kind == "nl":
            self.p += 1

    def read_key(self, stop: str) -> tuple[str, ...]:
        parts: list[str] = []
        while (t := self.peek()) is not None and t.kind not in (stop, "nl"):
            if t.kind == "str":
                parts.append(_key_string(t.text))
            elif t.kind == "word":
                parts.extend(s.strip() for s in t.text.split(".") if s.strip())
            self.p += 1
        return tuple(parts)

    def resolve(self, parts: tuple[str, ...]) -> Path_:
        """A table path with the index of the latest element of each array of tables in it."""
        path: Path_ = ()
        for part in parts:
            path += (part,)
            if path in self.arrays:
                path += (self.arrays[path] - 1,)
        return path

    def run(self) -> Located:
        table: Path_ = ()
        while (t := self.peek()) is not None:
            if t.kind == "nl":
                self.p += 1
            elif t.kind == "[":
                nxt = self.peek(1)
                double = nxt is not None and nxt.kind == "[" and nxt.pos == t.pos + 1
                self.p += 2 if double else 1
                parts = self.read_key("]")
                if double:
                    base = self.resolve(parts[:-1]) + parts[-1:]
                    self.arrays[base] = self.arrays.get(base, 0) + 1
                    table = base + (self.arrays[base] - 1,)
                    self.found.headers[table] = "[[" + ".".join(parts) + "]]"
                else:
                    table = self.resolve(parts)
                    self.found.headers[table] = "[" + ".".join(parts) + "]"
                self.record(table, t.line)
                self.skip_to_eol()
            else:
                self.key_value(table)
                self.skip_to_eol()
        return self.found

    def key_value(self, table: Path_) -> None:
        first = self.peek()
        key = self.read_key("=")
        if first is None or not key or (eq := self.peek()) is None or eq.kind != "=":
            return
        self.p += 1
        self.record(table + key, first.line)
        self.value(table + key)

    def value(self, path: Path_) -> None:
        t = self.peek()
        if t is None or t.kind == "nl":
            return
        if t.kind == "{":
            self.p += 1
            while (t := self.peek()) is not None:
                self.skip_nl()
                t = self.peek()
                if t is None or t.kind == "}":
                    self.p += 1
                    return
                if t.kind == ",":
                    self.p += 1
                    continue
                before = self.p
                self.key_value(path)
                if self.p == before:  # invalid input (we also run on broken files): move on
                    self.p += 1
        elif t.kind == "[":
            self.p += 1
            index = 0
            while True:
                self.skip_nl()
                t = self.peek()
                if t is None or t.kind == "]":
                    self.p += 1
                    return
                if t.kind == ",":
                    self.p += 1
                    continue
                before = self.p
                self.record(path + (index,), t.line)
                self.value(path + (index,))
                index += 1
                if self.p == before:
                    self.p += 1
        else:  # a scalar, possibly several words (a date and a time)
            while (t := self.peek()) is not None and t.kind not in (",", "]", "}", "nl"):
                self.p += 1


def locate_keys(text: str) -> Located:
    """Map every key path in TOML `text` to its line; best effort, never raises."""
    loc = _Locator(text)
    try:
        return loc.run()
    except (IndexError, ValueError, RecursionError):  # pragma: no cover - defensive
        return loc.found


# -- TOML syntax errors -------------------------------------------------------------------------

_TOML_POS = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")
_SYNTAX_HINTS = (
    ("Invalid value", 'text needs quotes, e.g. interval = "30s"; lists need [ ]'),
    ("Cannot overwrite", "this key is set twice; keep one"),
    ("Cannot declare", "this table is declared twice; use [[...]] for a list of tables"),
    ("Cannot mutate", "this table was already defined inline or as a list"),
    ("Expected '='", "write one key = value per line; quote keys with spaces"),
    ("Expected newline", 'one key = value per line; text needs quotes, e.g. refresh = "5s"'),
    ("Unterminated string", "close the quote on the same line, or use \"\"\" for many lines"),
    ("Unclosed", "a [ or { is not closed"),
    ("Expected ']", "close the table header with ] (or ]] for [[...]])"),
)


def _syntax_issue(exc: tomllib.TOMLDecodeError, text: str, filename: str) -> ConfigIssue:
    msg = str(exc)
    m = _TOML_POS.search(msg)
    line: int | None = None
    where = ""
    if m:
        msg = msg[: m.start()]
        if m.group(1):
            line, where = int(m.group(1)), f" at column {m.group(2)}"
        else:
            line, where = text.count("\n") + 1, " at the end of the file"
    if msg.startswith("Illegal character '\\n'"):  # a one-line string left open
        msg, where = "Unterminated string", ""
    found = locate_keys(text)
    key = ""
    if msg.startswith("Unterminated string") and found.unterminated:
        line, where = found.unterminated, ""
    elif msg.startswith("Cannot overwrite") and found.repeats:
        path, line = found.repeats[0]
        key, where = _plain_path(path), ""
    msg = re.sub(r"\('([^']*)',?\)", r"[\1]", msg)  # "Cannot declare ('x',) twice"
    hint = next((h for p, h in _SYNTAX_HINTS if msg.startswith(p)), None)
    return ConfigIssue(filename, line, key, f"TOML syntax error: {msg[:1].lower()}{msg[1:]}{where}",
                       hint)


def _plain_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- schema errors ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ctx:
    file: str
    data: dict[str, Any]
    loc: Located

    def issue(self, path: Path_, message: str, hint: str | None = None) -> ConfigIssue:
        return ConfigIssue(self.file, self.loc.line_of(path), self.key(path), message, hint)

    def key(self, path: Path_) -> str:
        """`targets[2] (name "api").timeout`: the index plus the item's name, as users see it."""
        out, node = "", cast(Any, self.data)
        for depth, part in enumerate(path):
            if isinstance(part, int):
                out += f"[{part}]"
                node = node[part] if isinstance(node, list) and part < len(node) else None
                if depth == 1 and isinstance(node, dict):
                    label = next((k for k in ("name", "title") if isinstance(node.get(k), str)),
                                 None)
                    if label:
                        out += f" ({label} {_quote(node[label])})"
            else:
                out += f".{part}" if out else str(part)
                node = node.get(part) if isinstance(node, dict) else None
        return out


def _quote(s: object) -> str:
    text = str(s)
    return '"' + (text if len(text) <= 40 else text[:39] + "…") + '"'


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Path_, Any, bool]:
    """pydantic's loc as a path through the file: drop union tags ("http") and member labels.

    Returns (path, the raw value there, whether the value exists in the file).
    """
    path: list[str | int] = []
    node = data
    present = True
    for part in loc:
        if not present:
            break
        if isinstance(node, dict):
            if part in node:
                path.append(part)
                node = node[part]
            elif part == node.get("kind"):
                continue  # discriminated-union tag
            elif part == "[key]":
                break
            else:
                path.append(part)
                node, present = None, False
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        else:
            break  # inside a scalar: union member labels such as "int" or "str"
    return tuple(path), node, present


def _unwrap(ann: Any) -> Any:
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _union_members(ann: Any) -> list[Any]:
    ann = _unwrap(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [_unwrap(a) for a in typing.get_args(ann)]
    return [ann]


def _is_model(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, BaseModel)


def _target_models() -> Mapping[TargetKind, type[BaseModel]]:
    """Each kind's model: the registry of target kinds."""
    return TARGET_KINDS


def _model_at(path: Path_, data: Any) -> type[BaseModel] | None:
    """The pydantic model describing the table at `path` (a target's model chosen by kind)."""
    model: type[BaseModel] | None = Settings
    node = data
    i = 0
    while i < len(path):
        if model is None:
            return None
        info = model.model_fields.get(str(path[i]))
        if info is None:
            return None
        node = node.get(path[i]) if isinstance(node, dict) else None
        ann = _unwrap(info.annotation)
        if typing.get_origin(ann) is list and i + 1 < len(path) and isinstance(path[i + 1], int):
            i += 1
            index = path[i]
            node = (node[index] if isinstance(node, list) and isinstance(index, int)
                    and index < len(node) else None)
            ann = typing.get_args(ann)[0]
        members = [m for m in _union_members(ann) if _is_model(m)]
        model = None
        if len(members) == 1:
            model = members[0]
        elif members and isinstance(node, dict):
            model = next((m for m in members if "kind" in m.model_fields
                          and m.model_fields["kind"].default == node.get("kind")), None)
        i += 1
    return model


def _field_info(path: Path_, data: Any) -> Any:
    model = _model_at(path[:-1], data) if path else None
    return model.model_fields.get(str(path[-1])) if model is not None else None


def _is_duration(path: Path_, data: Any) -> bool:
    info = _field_info(path, data)
    return info is not None and any(
        isinstance(m, BeforeValidator) and m.func is parse_duration for m in info.metadata
    )


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _listing(words: list[str], limit: int = 12) -> str:
    words = list(words)
    return ", ".join(words[:limit]) + (", …" if len(words) > limit else "")


_SIMPLE = {
    "string_type": "expected text in quotes",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "list_type": 'expected a list, e.g. ["a", "b"]',
}
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
}
_LISTS_OF_TABLES = ("targets", "panels", "dashboards")


def _schema_issues(ctx: _Ctx, err: dict[str, Any]) -> list[ConfigIssue]:
    """One pydantic error as issues: usually one, one per bad item for a list/table check."""
    if err["type"] in ("value_error", "assertion_error"):
        path, node, _present = _clean_loc(tuple(err["loc"]), ctx.data)
        per_item = _item_errors(path, node, ctx.data)
        if per_item:
            return [_value_issue(ctx, p, text) for p, text in per_item]
    return [_schema_issue(ctx, err)]


def _value_issue(ctx: _Ctx, path: Path_, text: str) -> ConfigIssue:
    message, _, hint = text.partition("; ")  # the schema's messages put their advice after "; "
    return ctx.issue(path, message, hint or None)


def _item_errors(path: Path_, node: Any, data: Any) -> list[tuple[Path_, str]]:
    """Re-run a list/table field's own validators item by item, to locate every bad item.

    A field validator sees the whole list and stops at its first bad item; an operator wants
    each bad condition or metric expression pointed at its own line.
    """
    if not path or not isinstance(node, list | dict) or len(node) < 1:
        return []
    model = _model_at(path[:-1], data)
    if model is None:
        return []
    funcs = [d.func for d in model.__pydantic_decorators__.field_validators.values()
             if path[-1] in d.info.fields and d.info.mode == "after"]
    found: list[tuple[Path_, str]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        one = {key: value} if isinstance(node, dict) else [value]
        for func in funcs:
            try:
                func(one)
            except ValueError as exc:
                found.append((path + (key,), str(exc)))
                break
            except Exception:  # a validator that needs more context: give up
                return []
    return found


def _schema_issue(ctx: _Ctx, err: dict[str, Any]) -> ConfigIssue:
    kind = err["type"]
    path, node, _present = _clean_loc(tuple(err["loc"]), ctx.data)
    err_ctx = err.get("ctx") or {}

    if kind == "extra_forbidden":
        return _unknown_key(ctx, path)
    if kind == "missing":
        name = str(path[-1]) if path else "?"
        table = ctx.loc.table_of(path[:-1])
        where = f"to this {table[1]} table" if table else "at the top of the file"
        return ctx.issue(path, "missing required key", f"add {name} = … {where}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds: list[str] = list(_target_models())
        if kind == "union_tag_not_found":
            return ctx.issue(path + ("kind",), "missing required key",
                             f'add kind = "{kinds[0]}" (kinds: {", ".join(kinds)})')
        tag = str(err_ctx.get("tag", ""))
        mean = _did_you_mean(tag, kinds)
        hint = (mean + " " if mean else "") + f"kinds: {', '.join(kinds)}"
        return ctx.issue(path + ("kind",), f"unknown kind {_quote(tag)}", hint)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(err_ctx.get("expected", "")))
        mean = _did_you_mean(str(node), choices) if isinstance(node, str) else None
        return ctx.issue(path, f"must be one of {', '.join(choices)}", mean)
    if kind in _BOUNDS:
        ctx_key, words = _BOUNDS[kind]
        limit = err_ctx.get(ctx_key)
        if _is_duration(path, ctx.data) and isinstance(limit, int | float):
            shown = format_duration(float(limit))
        else:
            shown = str(limit)
        got = f", not {node}" if isinstance(node, int | float | str) and node != "" else ""
        return ctx.issue(path, f"{words} {shown}{got}")
    if kind == "list_type" and len(path) == 1 and path[0] in _LISTS_OF_TABLES:
        return ctx.issue(path, f"expected a list of {path[0]}",
                         f"write each one as its own [[{path[0]}]] table (double brackets)")
    if kind == "string_too_short":
        n = err_ctx.get("min_length", 1)
        return ctx.issue(path, "must not be empty" if n == 1 else f"must be at least {n} "
                         "characters")
    if kind == "string_too_long":
        return ctx.issue(path, f"must be at most {err_ctx.get('max_length')} characters")
    if kind in _SIMPLE:
        return ctx.issue(path, _SIMPLE[kind])
    if kind in ("value_error", "assertion_error"):
        text = str(err_ctx.get("error") or err.get("msg", ""))
        return _value_issue(ctx, _narrow(path, node, text), text)
    msg = str(err.get("msg", "invalid value"))
    return ctx.issue(path, msg[:1].lower() + msg[1:])


def _narrow(path: Path_, node: Any, text: str) -> Path_:
    """Point a whole-list/table error at the element its message names (e.g. one header)."""
    if isinstance(node, dict):
        for k in node:
            if repr(k) in text or f'"{k}"' in text:
                return path + (k,)
    elif isinstance(node, list):
        for i, v in enumerate(node):  # a quoted item named anywhere in the message
            if isinstance(v, str) and v and (repr(v) in text or f'"{v}"' in text):
                return path + (i,)
        for i, v in enumerate(node):  # a number the message starts with ("1000 is not …")
            if isinstance(v, int | float) and not isinstance(v, bool) and re.match(
                rf"{re.escape(str(v))}(?![\d.])", text
            ):
                return path + (i,)
    return path


def _unknown_key(ctx: _Ctx, path: Path_) -> ConfigIssue:
    word = str(path[-1]) if path else ""
    model = _model_at(path[:-1], ctx.data)
    if model is None:
        return ctx.issue(path, "unknown key")
    fields = list(model.model_fields)
    hint = _did_you_mean(word, fields)
    if hint is None and model in _target_models().values():
        owners = [k for k, m in _target_models().items() if word in m.model_fields]
        if owners:
            kind = model.model_fields["kind"].default
            hint = f"{word} belongs to {'/'.join(owners)} targets, not {kind} targets"
    if hint is None:
        hint = f"keys here: {_listing(fields)}"
    return ctx.issue(path, "unknown key", hint)


# -- cross references and ${ENV} ----------------------------------------------------------------


def _items(data: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    items = data.get(section)
    if not isinstance(items, list):
        return []
    return [(i, t) for i, t in enumerate(items) if isinstance(t, dict)]


def _text(v: Any) -> str | None:
    return v.strip() if isinstance(v, str) else None


def _panel_key(p: dict[str, Any]) -> str | None:
    pid, title = _text(p.get("id")), _text(p.get("title"))
    if pid:
        return pid
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") if title else None


def _reference_issues(ctx: _Ctx) -> list[ConfigIssue]:
    """Duplicate target names and dangling panel/dashboard references, each at its own line."""
    issues: list[ConfigIssue] = []
    first_seen: dict[str, int] = {}
    for i, t in _items(ctx.data, "targets"):
        name = _text(t.get("name"))
        if not name:
            continue
        if name in first_seen:
            j = first_seen[name]
            line = ctx.loc.line_of(("targets", j, "name"))
            issues.append(ctx.issue(("targets", i, "name"), f"target name {_quote(name)} is "
                                    "already used", f"names must be unique; the first one is "
                                    f"targets[{j}]" + (f" at line {line}" if line else "")))
        else:
            first_seen[name] = i

    names = list(first_seen)
    for i, p in _items(ctx.data, "panels"):
        target = _text(p.get("target"))
        if target and target not in first_seen:
            hint = _did_you_mean(target, names) or (
                f"targets: {_listing(names)}" if names else "no targets are defined")
            issues.append(ctx.issue(("panels", i, "target"), f"unknown target {_quote(target)}",
                                    hint))

    keys = [key for _, p in _items(ctx.data, "panels") if (key := _panel_key(p))]
    for i, d in _items(ctx.data, "dashboards"):
        refs = d.get("panels")
        if not isinstance(refs, list):
            continue
        for k, ref in enumerate(refs):
            r_text = _text(ref)
            if r_text is not None and r_text not in keys:
                mean = _did_you_mean(r_text, keys)
                hint = (mean + " " if mean else "") + (
                    "a panel is named by its id, or by its title in lower case with dashes "
                    '("API latency" → "api-latency")')
                issues.append(ctx.issue(("dashboards", i, "panels", k),
                                        f"unknown panel {_quote(r_text)}", hint))
    return issues


def _shipped_rule_names() -> list[str]:
    from console.engine.config.rules import default_rules

    try:
        return [r.name for r in default_rules()]
    except (OSError, ValueError):  # a broken package is reported elsewhere, not as yours
        return []


def _rule_issues(ctx: _Ctx) -> list[ConfigIssue]:
    """A rule of the config whose `targets` patterns or `kinds` select no configured target,
    or whose `inhibits` names no rule, each at its own line with a did-you-mean.

    Why: such a rule never evaluates (or never inhibits), silently; a typo in a glob looks
    exactly like a quiet system. Only the rules written in this file are checked (a disabled
    one is not): the shipped rules' globs (payments, webhooks, api*) selecting nothing is
    normal for a config without such targets, so they stay silent. Shipped rules count as
    known names for `inhibits` while `[alerting] default_rules` is on.
    """
    issues: list[ConfigIssue] = []
    rules = _items(ctx.data, "rules")
    if not rules:
        return issues
    targets = [(name, t.get("kind")) for _, t in _items(ctx.data, "targets")
               if (name := _text(t.get("name")))]
    names = [n for n, _ in targets]
    valid_kinds = set(_target_models())
    alerting = ctx.data.get("alerting")
    defaults_on = not (isinstance(alerting, dict) and alerting.get("default_rules") is False)
    shipped = _shipped_rule_names()
    own = [n for _, r in rules if (n := _text(r.get("name")))]
    known = sorted(set(own) | (set(shipped) if defaults_on else set()))
    no_targets = "no targets are defined"
    for i, r in rules:
        if r.get("enabled") is False:
            continue
        raw_kinds: list[Any] = r["kinds"] if isinstance(r.get("kinds"), list) else []
        kinds = [k for k in raw_kinds if isinstance(k, str) and k in valid_kinds]
        present = sorted({str(k) for _, k in targets})
        for k, kind in enumerate(raw_kinds):
            if kind in kinds and not any(tk == kind for _, tk in targets):
                hint = (f"kinds of your targets: {', '.join(present)}" if present
                        else no_targets)
                issues.append(ctx.issue(("rules", i, "kinds", k),
                                        f"no {kind} target is configured", hint))
        pool = [n for n, tk in targets if not kinds or tk in kinds]
        globs: list[Any] = r["targets"] if isinstance(r.get("targets"), list) else []
        for k, glob in enumerate(globs):
            if not isinstance(glob, str) or any(fnmatch.fnmatchcase(n, glob) for n in pool):
                continue
            others = [n for n in names if fnmatch.fnmatchcase(n, glob)]
            if others:
                issues.append(ctx.issue(
                    ("rules", i, "targets", k),
                    f"targets pattern {_quote(glob)} matches only targets that are not "
                    f"{'/'.join(kinds)}: {_listing(others, 4)}",
                    "a rule applies to the targets matching both its targets and its kinds"))
                continue
            mean = _did_you_mean(glob, names)
            if mean is None:
                mean = f"targets: {_listing(names)}" if names else no_targets
                if names and not any(c in glob for c in "*?["):
                    mean += '; patterns may use * and ? (e.g. "api*")'
            issues.append(ctx.issue(("rules", i, "targets", k),
                                    f"targets pattern {_quote(glob)} matches no target", mean))
        inhibits: list[Any] = r["inhibits"] if isinstance(r.get("inhibits"), list) else []
        for k, other in enumerate(inhibits):
            # entries are patterns, as the lifecycle matches them ("latency-*")
            if not isinstance(other, str) or any(fnmatch.fnmatchcase(n, other) for n in known):
                continue
            if any(fnmatch.fnmatchcase(n, other) for n in shipped):
                hint = ("that is a shipped rule, and [alerting] default_rules = false turns "
                        "the shipped rules off")
            else:
                hint = _did_you_mean(other, known) or (
                    f"rules: {_listing(known)}" if known else "no rules are defined")
            issues.append(ctx.issue(("rules", i, "inhibits", k),
                                    f"inhibits unknown rule {_quote(other)}", hint))
    return issues


def _strings(node: Any, path: Path_) -> list[tuple[Path_, str]]:
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, path + (k,))]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, path + (i,))]
    return []


def _env_issues(ctx: _Ctx, env: Mapping[str, str]) -> list[ConfigIssue]:
    """Every `${VAR}` in a target or a receiver must name a set variable; a receiver's
    phone numbers must be E.164 once expanded. Secrets are not shown."""
    from console.engine.config.envref import expand
    from console.engine.config.rules import E164

    alerting = ctx.data.get("alerting")
    receivers = _items(alerting, "receivers") if isinstance(alerting, dict) else []
    state = ctx.data.get("state")  # [state] dsn, heartbeat_url
    shared: list[tuple[int | str, dict[str, Any]]] = \
        [("state", state)] if isinstance(state, dict) else []
    issues = []
    sections: list[tuple[tuple[str, ...], list[Any]]] = [
        (("targets",), _items(ctx.data, "targets")), (("alerting", "receivers"), receivers),
        ((), shared)]
    for prefix, items in sections:
        for i, t in items:
            for path, text in _strings(t, (*prefix, i)):
                if not ENV_REF.search(text):
                    continue
                unset = list(dict.fromkeys(missing_refs(text, env)))
                for var in unset:
                    issues.append(ctx.issue(path, f"environment variable {var} is not set",
                                            f"export {var}=… before starting opsconsole"))
                whole = ENV_REF.fullmatch(text.strip())
                if whole and not unset and not env[whole.group(1)].strip():
                    # `dsn = "${OPS_STATE_DSN}"` with OPS_STATE_DSN="": a driver would take
                    # its defaults (another database) instead of saying anything
                    var = whole.group(1)
                    issues.append(ctx.issue(path, f"environment variable {var} is empty",
                                            f"export {var}=… (the whole value) before "
                                            "starting opsconsole"))
                    continue
                if unset or prefix[:1] != ("alerting",) or path[-1] not in ("sms_from",
                                                                            "sms_to"):
                    continue
                value = expand(text, env, secret=False)
                if not E164.fullmatch(value):
                    issues.append(ctx.issue(path, f"{text} is {value!r}, not an E.164 number",
                                            "+ then the country code and number, no spaces "
                                            "(e.g. +14155550100)"))
    return issues
