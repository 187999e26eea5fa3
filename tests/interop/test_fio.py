#!/usr/bin/python3
"""fio's libnbd engine: 4 jobs (4 connections) on disjoint regions, iodepth 32, writes
verified with crc32c. fio must report no errors, no verify failures, and must really have
read back everything it wrote."""

import json

import nbdwire as w
from harness import Daemon, check, check_eq, run, run_cases

MIB = 1 << 20


def fio(uri, tmp, name, *opts):
    out = f"{tmp}/{name}.json"
    argv = ["fio", f"--name={name}", "--ioengine=nbd", f"--uri={uri}", "--output-format=json",
            f"--output={out}", *opts]
    r = run(argv, timeout=300, check_exit=False, cwd=tmp)  # fio leaves verify state in cwd
    try:
        with open(out) as f:
            text = f.read()
        doc = json.loads(text[text.index("{"):])  # fio may print notes before the JSON
    except (OSError, ValueError) as e:
        raise AssertionError(f"no fio JSON output ({e}):\n{r}") from e
    check_eq(r.returncode, 0, f"fio exit status\n{r}")
    return doc


def check_jobs(doc, jobs, region, exact=True):
    check_eq(len(doc["jobs"]), jobs, "fio job count")
    for j in doc["jobs"]:
        name = f"{j['jobname']}#{doc['jobs'].index(j)}"
        check_eq(j["error"], 0, f"{name}: error")
        written = j["write"]["io_bytes"]
        if exact:
            check_eq(written, region, f"{name}: bytes written")
        else:  # random block sizes leave a few gaps too small for the next block
            check(region * 0.9 <= written <= region, f"{name}: wrote {written} of {region}")
        # The verify phase reads back every block written.
        check_eq(j["read"]["io_bytes"], written, f"{name}: bytes read for verify")
        check_eq(j["write"].get("short_ios", 0) + j["read"].get("short_ios", 0), 0, "short IOs")
        check_eq(j["write"].get("drop_ios", 0) + j["read"].get("drop_ios", 0), 0, "dropped IOs")


def case_randwrite_verify(tmp):
    region = 64 * MIB
    job = ["--rw=randwrite", "--bs=4k", "--iodepth=32", "--numjobs=4", f"--size={region}",
           f"--offset_increment={region}", "--verify=crc32c", "--verify_fatal=1",
           "--verify_dump=0", "--randseed=4242"]
    with Daemon(tmp, disk_size_gb=1) as d:
        doc = fio(d.uri(), tmp, "randwrite", *job, "--do_verify=1")
        check_jobs(doc, 4, region)
        # Negative control: verification is live. Zero one block of job 2's region behind
        # fio's back; a verify-only pass must fail on it.
        with w.Conn(d.connect()) as c:
            c.start()
            check_eq(c.go()[-1][0], w.REP_ACK, "GO")
            check_eq(c.cmd(w.CMD_WRITE_ZEROES, 2 * region + 40960, 4096)[0], 0, "zero")
        r = run(["fio", "--name=randwrite", "--ioengine=nbd", f"--uri={d.uri()}", *job,
                 "--verify_only=1"], timeout=300, check_exit=False, cwd=tmp)
        check(r.returncode != 0 and "verify" in (r.stdout + r.stderr),
              f"fio did not notice a zeroed block:\n{r}")


def case_mixed_sizes_verify(tmp):
    """Block sizes from 512 bytes to 128 KiB (sub-block and multi-block), sequential and
    random, verified; the header carries the offset so misplaced writes are caught."""
    region = 32 * MIB
    with Daemon(tmp, disk_size_gb=1) as d:
        doc = fio(d.uri(), tmp, "mixed", "--rw=randwrite", "--bsrange=512-128k",
                  "--bs_unaligned=1", "--iodepth=32", "--numjobs=4", f"--size={region}",
                  f"--offset_increment={region}", "--verify=crc32c", "--do_verify=1",
                  "--verify_fatal=1", "--verify_dump=0", "--randrepeat=0")
        check_jobs(doc, 4, region, exact=False)
        doc = fio(d.uri(), tmp, "seq", "--rw=write", "--bs=1m", "--iodepth=8", "--numjobs=4",
                  f"--size={region}", f"--offset_increment={region}", "--verify=crc32c",
                  "--do_verify=1", "--verify_fatal=1", "--verify_dump=0")
        check_jobs(doc, 4, region)


if __name__ == "__main__":
    run_cases(globals(), tools=["fio"])
