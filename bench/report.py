"""Markdown tables from one benchmark run: bench/results/<date>.md and latest.md."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lib import BENCH, median

RESULTS = BENCH / "results"


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def med(runs: list[dict], key: str) -> float:
    return median([r[key] for r in runs])


def serving_tables(s: dict, cpus: float) -> tuple[list[str], list[tuple]]:
    runs = s["runs"]
    lines = [
        "| endpoint | CPU per backend | setup | req/s | p50 ms | p99 ms | failed | req/s vs seed | p99 vs seed |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    targets = []
    for path, suffix, limit in (("/", "", "no limit"), ("/health", "", "no limit"), ("/", " (limited)", f"{cpus}")):
        seed, tier = runs[f"seed {path}{suffix}"], runs[f"tier {path}{suffix}"]
        speed = median([t["rps"] / b["rps"] for t, b in zip(tier, seed)])
        p99 = median([t["p99_ms"] / b["p99_ms"] for t, b in zip(tier, seed)])
        for r, label, ratios in (
            (seed, "seed: 3 Flask dev servers, plain NGINX", "| 1.00x | 1.00x |"),
            (tier, "this project (site.yml)", f"| {speed:.2f}x | {p99:.2f}x |"),
        ):
            lines.append(
                f"| `{path}` | {limit} | {label} | {fmt(med(r, 'rps'), 0)} | {fmt(med(r, 'p50_ms'))} "
                f"| {fmt(med(r, 'p99_ms'))} | {sum(x['failed'] for x in r)} {ratios}"
            )
        where = f"`{path}`, {limit if suffix else 'no CPU limit'}"
        targets.append((f"{where}: throughput vs seed", ">= 2x", f"{speed:.2f}x", met(speed >= 2)))
        targets.append((f"{where}: p99 vs seed", "<= 0.5x", f"{p99:.2f}x", met(p99 <= 0.5)))
    return lines, targets


def overhead_table(s: dict) -> tuple[list[str], list[tuple]]:
    o = {"via LB": s["runs"]["1 connection via LB"], "direct": s["runs"]["1 connection direct"]}
    lines = ["| path (1 connection) | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for name in ("via LB", "direct"):
        lines.append(
            f"| {name} | {fmt(med(o[name], 'rps'), 0)} | {fmt(med(o[name], 'p50_ms'), 2)} "
            f"| {fmt(med(o[name], 'p99_ms'), 2)} |"
        )
    added = median([a["p50_ms"] - b["p50_ms"] for a, b in zip(o["via LB"], o["direct"])])
    return lines, [("LB overhead at p50, 1 connection", "< 1 ms", f"{added:.2f} ms", met(added < 1))]


def scaling_table(s: dict) -> tuple[list[str], list[tuple]]:
    runs = s["runs"]
    one = runs["scale 1"]
    lines = ["| backends | req/s | p99 ms | efficiency |", "|---:|---:|---:|---:|"]
    eff4 = 0.0
    for n in (1, 2, 3, 4):
        r = runs[f"scale {n}"]
        eff = median([x["rps"] / (n * b["rps"]) for x, b in zip(r, one)])
        eff4 = eff if n == 4 else eff4
        lines.append(f"| {n} | {fmt(med(r, 'rps'), 0)} | {fmt(med(r, 'p99_ms'))} | {eff:.0%} |")
    return lines, [("scaling efficiency at 4 backends", ">= 85 %", f"{eff4:.0%}", met(eff4 >= 0.85))]


def tuning_table(s: dict) -> list[str]:
    runs = s["runs"]
    groups = [
        ("upstream keep-alive, sync backends", "tier / (limited)", ["lb upstream keepalive off"], "keepalive 32"),
        ("upstream keep-alive, gthread backend", "gthread, keepalive on", ["gthread, keepalive off"], "keepalive 32"),
        (
            "access log",
            "tier / (limited)",
            ["lb access log buffered 64k"],
            "JSON, unbuffered (default)",
        ),
        ("HTTPS edge (h2load, 50 connections)", "https HTTP/1.1", ["https HTTP/2"], "HTTP/1.1"),
        (
            "gunicorn, one backend direct",
            "direct sync x5 (default)",
            ["direct sync x1", "direct gthread 2x4"],
            "sync x5 (default: 2 x vCPUs + 1)",
        ),
    ]
    lines = ["| knob | variant | req/s | p99 ms | req/s vs reference |", "|---|---|---:|---:|---:|"]
    for knob, ref, variants, ref_label in groups:
        base = runs[ref]
        lines.append(f"| {knob} | {ref_label} | {fmt(med(base, 'rps'), 0)} | {fmt(med(base, 'p99_ms'))} | 1.00x |")
        for name in variants:
            r = runs[name]
            ratio = median([x["rps"] / b["rps"] for x, b in zip(r, base)])
            lines.append(f"| | {name} | {fmt(med(r, 'rps'), 0)} | {fmt(med(r, 'p99_ms'))} | {ratio:.2f}x |")
    return lines


def provisioning_tables(p: dict) -> tuple[list[str], list[tuple]]:
    rounds = p["rounds"]
    lines = ["| 4-host lab (3 backends + 1 LB), default settings | seconds | runs | changed tasks |"]
    lines.append("|---|---:|---:|---:|")
    lines.append(f"| cold `site.yml` | {fmt(p['cold']['seconds'])} | 1 | {p['cold']['changed']} |")
    lines.append(
        f"| idempotent re-run | {fmt(median(rounds['idempotent']))} | {len(rounds['idempotent'])} "
        f"| {max(rounds['changed_idem'])} |"
    )
    lines.append(
        f"| re-run with one template changed | {fmt(median(rounds['template']))} | {len(rounds['template'])} "
        f"| {rounds.get('changed_template', '1 file + reload')} |"
    )
    if rounds["mitogen"]:
        lines.append(
            f"| idempotent re-run, mitogen strategy | {fmt(median(rounds['mitogen']))} | {len(rounds['mitogen'])} "
            f"| {max(rounds['changed_mito'])} |"
        )
    scale = {int(k): v for k, v in p["scale"].items()}
    lines += [
        "",
        "Scale: spare backends are set up beforehand as site.yml sets up a backend; the run adding them to the"
        " load balancer is `--limit loadbalancers`. Then one idempotent `site.yml` over all hosts, default settings.",
        "",
        "| hosts | backends | run adding them to the LB | idempotent re-run | runs | changed tasks | vs 4 hosts "
        "| mitogen: idempotent re-run | mitogen: vs 4 hosts |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scale[4].setdefault("mitogen", rounds["mitogen"])
    base = median(scale[4]["idempotent"])
    mito_base = median(scale[4]["mitogen"]) if scale[4]["mitogen"] else None
    for size in sorted(scale):
        e = scale[size]
        idem = median(e["idempotent"])
        if "scale_out" in e:
            first = fmt(e["scale_out"]) + (" (mitogen)" if e.get("scale_out_mitogen") else "")
            changed = e.get("changed", "")
        else:
            first, changed = "(the cold run above)", max(rounds["changed_idem"])
        mito = median(e["mitogen"]) if e.get("mitogen") and mito_base else None
        mito_cells = f"{fmt(mito)} | {mito / mito_base:.2f}x" if mito else "- | -"
        lines.append(
            f"| {size} | {size - 1} | {first} | {fmt(idem)} | {len(e['idempotent'])} | {changed} "
            f"| {idem / base:.2f}x | {mito_cells} |"
        )
    cold = p["cold"]["seconds"]
    idem_share = base / cold
    template_share = median(rounds["template"]) / cold
    ratio = median(scale[16]["idempotent"]) / base
    targets = [
        ("idempotent re-run vs cold run, 4 hosts", "<= 25 %", f"{idem_share:.0%}", met(idem_share <= 0.25)),
        ("one template changed vs cold run, 4 hosts", "<= 30 %", f"{template_share:.0%}", met(template_share <= 0.3)),
        ("idempotent re-run, 16 hosts vs 4", "<= 2.0x", f"{ratio:.2f}x", met(ratio <= 2)),
    ]
    if mito_base and scale[16].get("mitogen"):
        mito_ratio = median(scale[16]["mitogen"]) / mito_base
        mito_row = ("idempotent re-run under mitogen (MITOGEN=1), 16 hosts vs 4", "<= 2.0x", f"{mito_ratio:.2f}x")
        targets.append((*mito_row, met(mito_ratio <= 2)))
    settings = p.get("settings")
    if settings:
        t = settings["times"]
        lines += ["", f"| Ansible setting (ad-hoc run over {settings['hosts']} hosts) | seconds | vs default |"]
        lines.append("|---|---:|---:|")
        ref_task = median(t["pipelining on (default)"])
        ref_facts = median(t["facts: all (what site.yml gathers)"])
        for name, values in t.items():
            ref = ref_facts if name.startswith("facts") else ref_task
            lines.append(f"| {name} | {fmt(median(values))} | {median(values) / ref:.2f}x |")
    return lines, targets


def profile_tables(profiles: dict) -> list[str]:
    """Where each profiled run spent its time: totals, then per role, then the slowest tasks."""
    if not profiles:
        return []
    names = list(profiles)
    lines = [
        "Wall time against CPU time: the controller's (ansible-playbook, its workers and what they run here,"
        " such as `docker exec`) and the hosts' (every bench container). Host-seconds add up each host's wait"
        " for a task's result, so host-seconds / wall is how many hosts a run kept busy at once.",
        "",
        "| run | wall s | controller CPU s | hosts' CPU s | tasks | module runs | host-seconds / wall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in profiles.items():
        host_seconds = sum(role["host_seconds"] for role in p["roles"].values())
        lines.append(
            f"| {name} | {fmt(p['seconds'])} | {fmt(p['controller_cpu'])} | {fmt(p['hosts_cpu'])} | {p['tasks']} "
            f"| {p['runs']} | {host_seconds / p['seconds']:.1f} |"
        )
    roles = sorted({role for p in profiles.values() for role in p["roles"]})
    lines += ["", "Per role: wall seconds (module runs).", ""]
    lines.append("| role | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for role in sorted(roles, key=lambda r: -profiles[names[0]]["roles"].get(r, {}).get("wall", 0)):
        cells = []
        for name in names:
            entry = profiles[name]["roles"].get(role)
            cells.append(f"{fmt(entry['wall'])} ({entry['runs']})" if entry else "")
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    for name in (n for n in names if n.startswith("idempotent")):
        lines += ["", f"Slowest tasks, {name}:", "", "| task | wall s | module runs |", "|---|---:|---:|"]
        for task in profiles[name]["slowest"]:
            label = task["name"].removeprefix(f"{task['role']} : ")  # Ansible names a role's tasks "role : name"
            lines.append(f"| {task['role']}: {label} | {fmt(task['wall'])} | {task['runs']} |")
    return lines


def failure_table(f: dict) -> tuple[list[str], list[tuple]]:
    lines = [
        "| operation under load (100 req/s) | requests | failed | longest gap s | slowest s |",
        "|---|---:|---:|---:|---:|",
    ]
    total_req = total_failed = 0
    for name, r in f["cases"].items():
        gap = f"{r['longest_gap_s']:.3f}" if "longest_gap_s" in r else ""
        retried = f" ({r['retried']} retried)" if r.get("retried") else ""
        lines.append(f"| {name} | {r['requests']} | {r['failed']}{retried} | {gap} | {r['slowest_s']:.3f} |")
        total_req += r["requests"]
        total_failed += r["failed"]
    lines.append(f"| **total** | **{total_req}** | **{total_failed}** | | |")
    target = (
        "failed requests during kill, rolling update, reloads, hung backend, lost LB",
        "0",
        str(total_failed),
        met(not total_failed),
    )
    return lines, [target]


def phase_table(phases: dict) -> list[str]:
    if not phases:
        return []
    lines = ["| phase | minutes |", "|---|---:|"]
    lines += [f"| {name} | {seconds / 60:.1f} |" for name, seconds in phases.items()]
    return [*lines, ""]


def render(r: dict) -> tuple[str, str]:
    m, v = r["machine"], r["versions"]
    serving, t1 = serving_tables(r["serving"], r["backend_cpus"])
    overhead, t2 = overhead_table(r["serving"])
    scaling, t3 = scaling_table(r["serving"])
    prov, t4 = provisioning_tables(r["provisioning"])
    fails, t5 = failure_table(r["failures"])
    minutes = r["total_seconds"] / 60
    targets = [*t1, *t2, *t3, *t4, *t5, ("`make bench` wall time", "< 20 min", f"{minutes:.1f} min", met(minutes < 20))]
    target_lines = ["| target | wanted | measured | |", "|---|---|---|---|"]
    target_lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets]
    head = [
        f"Run {r['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM ({m['os']}).",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Each figure is the median of {r['rounds']} interleaved rounds ({r['seconds_per_load_run']} s per load run, "
        f"wrk -t2 -c50 from a container on the bench network). Seed against this project and the LB overhead "
        f"are measured first without CPU limits, then everything again with each backend limited to "
        f"{r['backend_cpus']} CPU (`docker update --cpus`); load balancers and load generator are never limited. "
        f"Ratios are taken round by round, then the median.",
    ]
    if r.get("mitogen_error"):
        head.append(f"Mitogen was not measured: {r['mitogen_error']}.")
    summary = "\n".join(
        [" ".join(head), "", "**Targets**", "", *target_lines, "", "**Seed vs this project**", "", *serving]
    )
    full = "\n".join(
        [
            f"# Benchmarks, {r['date']}",
            "",
            summary,
            "",
            "## LB overhead",
            "",
            *overhead,
            "",
            "## Scaling (backends at a fixed CPU limit each)",
            "",
            *scaling,
            "",
            "## Tuning, each knob measured",
            "",
            *tuning_table(r["serving"]),
            "",
            "## Provisioning",
            "",
            *prov,
            "",
            "## Where provisioning spends its time",
            "",
            *profile_tables(r["provisioning"].get("profiles", {})),
            "",
            "## Failure figures (tests/zero_downtime/loaddriver.py, a new connection per request)",
            "",
            *fails,
            "",
            f"`make bench` took {minutes:.1f} minutes.",
            "",
            *phase_table(r.get("phases", {})),
        ]
    )
    return full, summary


def write(results: dict) -> list[Path]:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "raw").mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    (RESULTS / "raw" / f"{stamp}.json").write_text(json.dumps(results, indent=1, default=str))
    full, _summary = render(results)
    dated = RESULTS / f"{stamp}.md"
    dated.write_text(full)
    (RESULTS / "latest.md").write_text(full)
    return [dated, RESULTS / "latest.md"]


if __name__ == "__main__":
    import sys

    # Render again from a raw JSON file: python bench/report.py bench/results/raw/<date>.json
    write(json.loads(Path(sys.argv[1]).read_text()))
