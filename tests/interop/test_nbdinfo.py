#!/usr/bin/python3
"""nbdinfo (libnbd) against portalbd: what a standard client sees of the export."""

import json

from harness import Daemon, check, check_eq, run, run_cases

GIB = 1 << 30


def info_json(uri, *extra):
    r = run(["nbdinfo", "--json", *extra, uri])
    return json.loads(r.stdout)


def check_export(doc, size):
    check_eq(doc["protocol"], "newstyle-fixed", "protocol")
    check_eq(doc["TLS"], False, "TLS")
    check_eq(doc["structured"], True, "structured replies")
    check_eq(len(doc["exports"]), 1, "number of exports")
    e = doc["exports"][0]
    check_eq(e["export-name"], "portalbd", "export name")
    check_eq(e["export-size"], size, "export size")
    for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache",
                 "can_multi_conn", "can_df"):
        check_eq(e.get(flag), True, flag)
    check_eq(e.get("is_read_only"), False, "is_read_only")
    check("base:allocation" in e.get("contexts", []), f"contexts lack base:allocation: {e}")
    check_eq(e.get("block_size_minimum"), 1, "block_size_minimum")
    check_eq(e.get("block_size_preferred"), 4096, "block_size_preferred")
    check_eq(e.get("block_size_maximum"), 32 << 20, "block_size_maximum")
    check("portalbd" in e.get("description", ""), f"description: {e.get('description')!r}")
    return e


def case_json(tmp):
    with Daemon(tmp, disk_size_gb=3) as d:
        check_export(info_json(d.uri()), 3 * GIB)


def case_default_export(tmp):
    """The empty export name selects the default export, which is portalbd."""
    with Daemon(tmp, disk_size_gb=2) as d:
        e = check_export(info_json(d.uri(export="")), 2 * GIB)
        check_eq(e["export-name"], "portalbd", "canonical name of the default export")


def case_unknown_export(tmp):
    with Daemon(tmp) as d:
        r = run(["nbdinfo", "--json", d.uri(export="nosuch")], check_exit=False)
        check(r.returncode != 0, f"nbdinfo of an unknown export succeeded:\n{r}")
        check("nosuch" in r.stderr, f"error does not name the export:\n{r}")


def case_list(tmp):
    with Daemon(tmp, disk_size_gb=5) as d:
        # Text listing: the export and its details.
        r = run(["nbdinfo", "--list", f"nbd://{d.address}"])
        check('export="portalbd"' in r.stdout, f"--list lacks the export:\n{r}")
        check("export-size: 5368709120" in r.stdout, f"--list lacks the size:\n{r}")
        # JSON listing: exactly one export.
        doc = info_json(f"nbd://{d.address}", "--list")
        check_export(doc, 5 * GIB)


def case_size_only(tmp):
    with Daemon(tmp, disk_size_gb=7) as d:
        r = run(["nbdinfo", "--size", d.uri()])
        check_eq(r.stdout.strip(), str(7 * GIB), "nbdinfo --size")
        r = run(["nbdinfo", "--can", "multi-conn", d.uri()], check_exit=False)
        check_eq(r.returncode, 0, "nbdinfo --can multi-conn exit status")
        r = run(["nbdinfo", "--is", "read-only", d.uri()], check_exit=False)
        check_eq(r.returncode, 2, "nbdinfo --is read-only exit status (2 = false)")


def case_map(tmp):
    """nbdinfo --map walks base:allocation: a fresh device is one hole."""
    with Daemon(tmp, disk_size_gb=1) as d:
        r = run(["nbdinfo", "--map", "--json", d.uri()])
        extents = json.loads(r.stdout)
        check_eq(sum(x["length"] for x in extents), GIB, "mapped length")
        check(all(x["type"] == 3 for x in extents), f"fresh device not all hole+zero: {extents}")


if __name__ == "__main__":
    run_cases(globals(), tools=["nbdinfo"])
