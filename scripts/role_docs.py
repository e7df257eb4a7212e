#!/usr/bin/env python3
"""Each role's meta/argument_specs.yml is the one place its variables are typed, defaulted and described.

Checks, for every role with argument specs: each top-level variable of defaults/main.yml is an
option of some entry point; each option has a type and a description; its default equals the
value in defaults/main.yml (parsed YAML, so a templated default is the same string); an option
that defaults/main.yml does not set says `required: true` or `default: null`.

Writes the README's variable tables from the specs: per role and entry point, the entry point's
description and a table (variable, type, default, description) between markers

    <!-- role-vars:ROLE:begin --> ... <!-- role-vars:ROLE:end -->                (entry point main)
    <!-- role-vars:ROLE:ENTRY:begin --> ... <!-- role-vars:ROLE:ENTRY:end -->    (any other)

An entry point whose options are main's own (a YAML alias) needs no markers.

    python scripts/role_docs.py [--roles a,b]           check, then rewrite the tables (make docs)
    python scripts/role_docs.py --check [--roles a,b]   check, and fail when the tables are stale (make lint)

Problems are printed as `role: variable: problem`; the exit status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- role-vars:([a-z0-9_]+)(?::([a-z0-9_]+))?:(begin|end) -->")
NO_DEFAULT = object()
# What an option of an argument spec may say; anything else is a typo (often a comma in flow style).
# fmt: off
OPTION_KEYS = {
    "type", "elements", "default", "description", "choices", "required", "options", "aliases", "version_added",
    "apply_defaults", "no_log", "deprecated_aliases", "removed_in_version", "removed_at_date",
}
# fmt: on


class Loader(yaml.SafeLoader):
    """Safe loading that reads tagged values (!unsafe, !vault) as the plain value underneath."""


def _untagged(loader, _suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


Loader.add_multi_constructor("!", _untagged)


def load(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=Loader)


def same(a, b) -> bool:
    """Equality of parsed YAML values that also tells 1 from 1.0 and from true."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def flow(value) -> str:
    """A value written as YAML flow style on one line, as a reader would type it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    text = str(value)
    plain = (
        text
        and text == text.strip()
        and not re.search(r"[,\[\]{}#&*!|>'\"%@`]|: |^[-?:]", text)
        and yaml.safe_load(text) == text
    )
    return text if plain else json.dumps(text)


def code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def prose(text) -> str:
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    text = " ".join(str(text or "").split())
    return re.sub(r"([|<*])", r"\\\1", text)


def type_of(option: dict) -> str:
    kind = option.get("type", "str")
    if option.get("elements"):
        kind = f"{kind} of {option['elements']}"
    return kind


def table(options: dict) -> str:
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in options.items():
        option = option or {}
        default = "required" if option.get("required") else code(flow(option.get("default")))
        description = prose(option.get("description"))
        if option.get("choices"):
            description += " Choices: " + ", ".join(code(flow(c)) for c in option["choices"]) + "."
        rows.append(f"| {code(name)} | {type_of(option)} | {default} | {description.strip()} |")
    return "\n".join(rows)


def description(spec: dict) -> str:
    """The entry point's long description, one paragraph per list item, ready to precede its table."""
    text = spec.get("description") or []
    paragraphs = [text] if isinstance(text, str) else text
    return "".join(prose(p) + "\n\n" for p in paragraphs if str(p).strip())


def check_role(role: str, specs: dict, defaults: dict) -> list[str]:
    """Each spec option agrees with defaults/main.yml, and each default has an option."""
    problems, documented = [], set()
    for entry, spec in ((specs or {}).get("argument_specs") or {}).items():
        where = "the spec" if entry == "main" else f"the spec (entry point {entry})"
        for name, option in ((spec or {}).get("options") or {}).items():
            option = option or {}
            documented.add(name)

            def report(problem, name=name):
                problems.append(f"{role}: {name}: {problem}")

            for key in ("type", "description"):
                if key not in option:
                    report(f"{where} gives no {key}")
            for key in sorted(set(option) - OPTION_KEYS, key=str):
                report(f"unknown key {key!r} in {where} (an unquoted comma in flow style?)")
            spec_default = option.get("default", NO_DEFAULT)
            if name in defaults:
                if spec_default is NO_DEFAULT:
                    report(f"{where} gives no default; defaults/main.yml has {flow(defaults[name])}")
                elif not same(spec_default, defaults[name]):
                    report(f"{where} says default {flow(spec_default)}, defaults/main.yml has {flow(defaults[name])}")
            elif spec_default is not NO_DEFAULT and spec_default is not None:
                report(f"{where} says default {flow(spec_default)}, but defaults/main.yml does not set it")
            elif spec_default is NO_DEFAULT and not option.get("required"):
                report(f"not in defaults/main.yml, so {where} must say required: true or default: null")
    for name in defaults:
        if name not in documented:
            problems.append(f"{role}: {name}: in defaults/main.yml but in no entry point of meta/argument_specs.yml")
    return problems


def render(readme: str, tables: dict, optional: set, roles: set[str], every_role: bool) -> tuple[str, list[str]]:
    """README text with the selected tables replaced, and the marker problems found."""
    problems, out, pos, open_key = [], [], 0, None
    seen = set()
    for match in MARKER.finditer(readme):
        key = (match.group(1), match.group(2) or "main")
        label = "role-vars:" + ":".join(k for k in (match.group(1), match.group(2)) if k)
        if match.group(3) == "begin":
            if open_key:
                problems.append(f"README.md: {label}: begins inside another table's markers")
            open_key = key
            out.append(readme[pos : match.end()])
            pos = match.end()
            continue
        if open_key != key:
            problems.append(f"README.md: {label}: end marker without its begin marker")
            continue
        open_key = None
        seen.add(key)
        if key in tables:
            out.append(f"\n\n{tables[key]}\n\n")
            pos = match.start()
        elif every_role or key[0] in roles:
            problems.append(f"README.md: {label}: no such role or entry point in roles/*/meta/argument_specs.yml")
    if open_key:
        problems.append(f"README.md: role-vars:{':'.join(open_key)}: begin marker without its end marker")
    out.append(readme[pos:])
    for role, entry in sorted(set(tables) - seen - optional):
        label = role if entry == "main" else f"{role}:{entry}"
        problems.append(f"README.md: role-vars:{label}: markers missing (add <!-- role-vars:{label}:begin/end -->)")
    return "".join(out), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; fail when README.md is stale")
    parser.add_argument("--roles", help="comma-separated roles to check (default: every role with argument specs)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--roles-dir", type=Path, default=ROOT / "roles")
    args = parser.parse_args(argv)

    available = sorted(p.parent.parent.name for p in args.roles_dir.glob("*/meta/argument_specs.yml"))
    selected = [r for r in (args.roles or "").split(",") if r] or available
    unknown = sorted(set(selected) - set(available))
    if unknown:
        parser.error(f"no meta/argument_specs.yml for role(s): {', '.join(unknown)}")

    problems, tables, optional = [], {}, set()
    for role in selected:
        base = args.roles_dir / role
        specs = load(base / "meta" / "argument_specs.yml") or {}
        defaults_file = base / "defaults" / "main.yml"
        defaults = (load(defaults_file) or {}) if defaults_file.exists() else {}
        problems += check_role(role, specs, defaults)
        entries = specs.get("argument_specs") or {}
        main_options = (entries.get("main") or {}).get("options")
        for entry, spec in entries.items():
            options = (spec or {}).get("options") or {}
            text = description(spec or {})
            if entry != "main" and options == main_options:
                # An entry point that reuses main's options (a YAML alias) needs no table of its own.
                tables[(role, entry)] = text + "The same variables as the main entry point."
                optional.add((role, entry))
            else:
                tables[(role, entry)] = text + table(options)

    readme = args.readme.read_text(encoding="utf-8")
    new, marker_problems = render(readme, tables, optional, set(selected), every_role=not args.roles)
    problems += marker_problems
    if new != readme:
        if args.check:
            problems.append("README.md: the variable tables are stale (run make docs)")
        elif not marker_problems:  # with broken markers, rewriting could eat the prose between them
            args.readme.write_text(new, encoding="utf-8")
            print(f"{args.readme.name}: variable tables rewritten")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
