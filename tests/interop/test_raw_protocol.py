#!/usr/bin/python3
"""Byte-level NBD protocol tests with plain sockets, for what libnbd cannot send:
handshake violations, odd options, malformed requests. Each case checks the exact reply
and that the connection (or the server) is in the state the spec requires afterwards."""

import os
import struct
import time

import nbdwire as w
from harness import Daemon, check, check_eq, run_cases

GIB, MIB, BS = 1 << 30, 1 << 20, 4096
SIZE = 2 * GIB


def daemon(tmp, **kw):
    return Daemon(tmp, disk_size_gb=SIZE // GIB, **kw)


def conn(d):
    return w.Conn(d.connect())


def go(d, structured=False, meta=None, export="portalbd"):
    """A connection in transmission, through NBD_OPT_GO."""
    c = conn(d)
    c.start()
    if structured:
        c.structured_reply()
    if meta is not None:
        replies = c.set_meta_context(export, meta)
        check_eq(replies[-1][0], w.REP_ACK, "SET_META_CONTEXT")
    replies = c.go(export)
    check_eq(replies[-1][0], w.REP_ACK, f"GO: {replies}")
    c.structured = structured
    return c


def still_works(c, what):
    """A READ on the connection is answered correctly (the stream is in frame)."""
    err, data = c.cmd(w.CMD_READ, 0, 512, cookie=0xC0FFEE)
    check_eq(err, 0, f"READ after {what}")
    check_eq(len(data), 512, f"READ after {what}: length")


def new_client_works(d, what):
    with go(d) as c:
        still_works(c, what)


# --- Handshake ---------------------------------------------------------------------------


def case_greeting(tmp):
    with daemon(tmp) as d, conn(d) as c:
        flags = c.greeting()
        check_eq(flags, w.FLAG_FIXED_NEWSTYLE | w.FLAG_NO_ZEROES, "handshake flags")


def case_unknown_client_flags(tmp):
    """Unknown client flags: the server MUST close (it cannot answer)."""
    with daemon(tmp) as d:
        for flags in (1 << 2, 1 << 31, 0xFFFFFFFF):
            with conn(d) as c:
                c.greeting()
                c.client_flags(flags)
                c.expect_closed()
        new_client_works(d, "clients with unknown flags")


def case_unknown_option(tmp):
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        for opt in (99, w.OPT_PEEK_EXPORT, w.OPT_STARTTLS, 0x7FFFFFFF, 12):
            replies = c.option(opt, b"some data" if opt == 99 else b"")
            check_eq(len(replies), 1, f"replies to option {opt}")
            check_eq(replies[0][0], w.REP_ERR_UNSUP, f"option {opt}")
        # The connection survives: GO succeeds and a request works.
        check_eq(c.go()[-1][0], w.REP_ACK, "GO after unknown options")
        still_works(c, "unknown options")


def case_export_name(tmp):
    """NBD_OPT_EXPORT_NAME: 8-byte size + 2-byte flags, then 124 zero bytes unless the
    client set NO_ZEROES."""
    with daemon(tmp) as d:
        for no_zeroes in (True, False):
            for name in ("portalbd", ""):
                with conn(d) as c:
                    c.greeting()
                    c.client_flags(w.FLAG_C_FIXED_NEWSTYLE |
                                   (w.FLAG_C_NO_ZEROES if no_zeroes else 0))
                    c.export_name(name, no_zeroes=no_zeroes)
                    check_eq(c.size, SIZE, "export size")
                    check_eq(c.tflags & w.TF_SEND_DF, 0, "SEND_DF without structured replies")
                    check(c.tflags & w.TF_HAS_FLAGS and c.tflags & w.TF_SEND_FLUSH,
                          f"transmission flags {c.tflags:#x}")
                    # Nothing else follows: the next bytes are the READ's reply.
                    still_works(c, f"EXPORT_NAME no_zeroes={no_zeroes} name={name!r}")
        # An unknown name cannot be answered with an error: the server closes.
        with conn(d) as c:
            c.start()
            c.send_option(w.OPT_EXPORT_NAME, b"nosuch")
            c.expect_closed()
        # With structured replies negotiated first, EXPORT_NAME advertises SEND_DF.
        with conn(d) as c:
            c.start()
            c.structured_reply()
            c.export_name("portalbd")
            check(c.tflags & w.TF_SEND_DF, f"SEND_DF missing after structured: {c.tflags:#x}")


def case_list(tmp):
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        replies = c.option(w.OPT_LIST)
        check_eq([t for t, _ in replies], [w.REP_SERVER, w.REP_ACK], "LIST reply types")
        p = replies[0][1]
        n = struct.unpack(">I", p[:4])[0]
        check_eq(p[4:4 + n], b"portalbd", "listed export name")
        # LIST takes no data.
        check_eq(c.option(w.OPT_LIST, b"x")[-1][0], w.REP_ERR_INVALID, "LIST with data")
        check_eq(c.go()[-1][0], w.REP_ACK, "GO after LIST")
        still_works(c, "LIST")


def case_info(tmp):
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        for export in ("portalbd", ""):
            replies = c.go(export, infos=(w.INFO_NAME, w.INFO_DESCRIPTION, w.INFO_BLOCK_SIZE),
                           option=w.OPT_INFO)
            check_eq(replies[-1][0], w.REP_ACK, f"INFO {export!r}")
            infos = w.parse_infos(replies)
            size, flags = struct.unpack(">QH", infos[w.INFO_EXPORT])
            check_eq(size, SIZE, "INFO_EXPORT size")
            for bit in (w.TF_HAS_FLAGS, w.TF_SEND_FLUSH, w.TF_SEND_FUA, w.TF_SEND_TRIM,
                        w.TF_SEND_WRITE_ZEROES, w.TF_CAN_MULTI_CONN, w.TF_SEND_CACHE,
                        w.TF_SEND_FAST_ZERO):
                check(flags & bit, f"INFO_EXPORT flags {flags:#x} lack {bit:#x}")
            check_eq(flags & (w.TF_READ_ONLY | w.TF_SEND_DF), 0, "READ_ONLY/SEND_DF set")
            check_eq(infos.get(w.INFO_NAME), b"portalbd", "INFO_NAME")
            check(b"portalbd" in infos.get(w.INFO_DESCRIPTION, b""), "INFO_DESCRIPTION")
            check_eq(struct.unpack(">III", infos[w.INFO_BLOCK_SIZE]), (1, 4096, 32 * MIB),
                     "INFO_BLOCK_SIZE")
        # Unknown export: an error, and the option haggling goes on.
        replies = c.go("nosuch", option=w.OPT_INFO)
        check_eq(replies[-1][0], w.REP_ERR_UNKNOWN, "INFO of an unknown export")
        replies = c.go("nosuch")
        check_eq(replies[-1][0], w.REP_ERR_UNKNOWN, "GO to an unknown export")
        # Malformed: count disagrees with the length, name longer than the data.
        bad = [struct.pack(">I", 8) + b"portalbd" + struct.pack(">H", 2) + b"\0\1",
               struct.pack(">I", 100) + b"portalbd\0\0",
               struct.pack(">I", 8) + b"portalbd", b"\0\0"]
        for data in bad:
            for opt in (w.OPT_INFO, w.OPT_GO):
                check_eq(c.option(opt, data)[-1][0], w.REP_ERR_INVALID, f"malformed {data!r}")
        # INFO leaves the connection negotiating; GO then enters transmission.
        check_eq(c.go()[-1][0], w.REP_ACK, "GO after INFO")
        still_works(c, "INFO")


def case_structured_reply_option(tmp):
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        check_eq(c.option(w.OPT_STRUCTURED_REPLY, b"x")[-1][0], w.REP_ERR_INVALID,
                 "STRUCTURED_REPLY with data")
        c.structured_reply()
        check_eq(c.option(w.OPT_STRUCTURED_REPLY)[-1][0], w.REP_ERR_INVALID,
                 "STRUCTURED_REPLY twice")
        replies = c.go()
        check_eq(replies[-1][0], w.REP_ACK, "GO")
        check(c.tflags & w.TF_SEND_DF, f"SEND_DF missing with structured: {c.tflags:#x}")


def case_send_df_only_with_structured(tmp):
    with daemon(tmp) as d:
        for structured in (False, True):
            with conn(d) as c:
                c.start()
                if structured:
                    c.structured_reply()
                infos = w.parse_infos(c.go(option=w.OPT_INFO))
                _, flags = struct.unpack(">QH", infos[w.INFO_EXPORT])
                check_eq(bool(flags & w.TF_SEND_DF), structured, f"INFO flags {flags:#x}")
                c.go()
                check_eq(bool(c.tflags & w.TF_SEND_DF), structured, f"GO flags {c.tflags:#x}")
                # DF on READ: valid only when SEND_DF was advertised.
                c.structured = structured
                err, data = c.cmd(w.CMD_READ, 0, BS, flags=w.CMD_FLAG_DF)
                check_eq(err, 0 if structured else w.EINVAL, "READ with DF")
                still_works(c, "READ with DF")


def case_meta_context(tmp):
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        # Before structured replies: refused.
        for opt in (w.OPT_LIST_META_CONTEXT, w.OPT_SET_META_CONTEXT):
            replies = c.option(opt, w.meta_request("portalbd", ["base:allocation"]))
            check_eq(replies[-1][0], w.REP_ERR_INVALID, f"option {opt} before structured")
        c.structured_reply()
        lst = lambda qs, export="portalbd": c.option(w.OPT_LIST_META_CONTEXT,
                                                     w.meta_request(export, qs))
        ctx = lambda replies: [p[4:] for t, p in replies if t == w.REP_META_CONTEXT]
        for qs in ([], ["base:"], ["base:allocation"], ["qemu:dirty-bitmap:x", "base:"]):
            replies = lst(qs)
            check_eq(replies[-1][0], w.REP_ACK, f"LIST_META_CONTEXT {qs}")
            check_eq(ctx(replies), [b"base:allocation"], f"LIST_META_CONTEXT {qs}")
        for qs in (["base:nosuch"], ["qemu:dirty-bitmap:x"], ["x-other:"]):
            replies = lst(qs)
            check_eq(replies, [(w.REP_ACK, b"")], f"LIST_META_CONTEXT {qs} matches nothing")
        check_eq(lst(["base:"], export="")[-1][0], w.REP_ACK, "LIST for the default export")
        check_eq(lst(["base:"], export="nosuch")[-1][0], w.REP_ERR_UNKNOWN, "unknown export")
        # SET with only the namespace selects nothing (the spec: MUST ignore 'base:').
        replies = c.set_meta_context("portalbd", ["base:"])
        check_eq(replies, [(w.REP_ACK, b"")], "SET_META_CONTEXT base:")
        # Malformed lengths: NBD_REP_ERR_INVALID, and the connection goes on.
        good = w.meta_request("portalbd", ["base:allocation"])
        malformed = [
            good[:-1],                                   # query cut short
            good + b"\0",                                # trailing byte
            struct.pack(">I", 1000) + good[4:],          # name length past the end
            struct.pack(">I", 8) + b"portalbd" + struct.pack(">I", 0xFFFFFFFF),  # count
            struct.pack(">I", 8) + b"portalbd" + struct.pack(">II", 1, 0xFFFF),  # query len
            b"\0\0",                                     # shorter than a length
        ]
        for data in malformed:
            for opt in (w.OPT_LIST_META_CONTEXT, w.OPT_SET_META_CONTEXT):
                check_eq(c.option(opt, data)[-1][0], w.REP_ERR_INVALID,
                         f"option {opt} with {data[:40]!r}")
        # A real selection: one context with a nonzero id, used by BLOCK_STATUS.
        replies = c.set_meta_context("portalbd", ["base:allocation", "qemu:nosuch"])
        check_eq([t for t, _ in replies], [w.REP_META_CONTEXT, w.REP_ACK], "SET replies")
        ctx_id = struct.unpack(">I", replies[0][1][:4])[0]
        check_eq(replies[0][1][4:], b"base:allocation", "selected context name")
        check_eq(c.go()[-1][0], w.REP_ACK, "GO")
        c.structured = True
        c.request(w.CMD_BLOCK_STATUS, 0, 1 << 20, cookie=7)
        kind, err, cookie, chunks = c.read_reply()
        check_eq((kind, err, cookie), ("structured", 0, 7), "BLOCK_STATUS reply")
        check_eq(len(chunks), 1, "BLOCK_STATUS chunk count")
        flags, rtype, payload = chunks[0]
        check_eq((flags, rtype), (w.REPLY_FLAG_DONE, w.REPLY_TYPE_BLOCK_STATUS), "chunk")
        got_id, extents = w.parse_block_status(payload)
        check_eq(got_id, ctx_id, "context id in BLOCK_STATUS")
        check_eq(extents, [(1 << 20, 3)], "extents of an empty device")


def case_meta_context_scope(tmp):
    """BLOCK_STATUS needs the final SET to have selected a context for the export that
    was then opened: 'base:' alone or a failed SET leave nothing selected."""
    with daemon(tmp) as d:
        for queries in (["base:"], ["base:nosuch"]):
            with go(d, structured=True, meta=queries) as c:
                err, _ = c.cmd(w.CMD_BLOCK_STATUS, 0, BS)
                check_eq(err, w.EINVAL, f"BLOCK_STATUS after SET {queries}")
                still_works(c, "BLOCK_STATUS without a context")
        with conn(d) as c:  # selected, then replaced by a malformed SET
            c.start()
            c.structured_reply()
            check_eq(c.set_meta_context("portalbd", ["base:allocation"])[-1][0], w.REP_ACK, "")
            check_eq(c.option(w.OPT_SET_META_CONTEXT, b"\0")[-1][0], w.REP_ERR_INVALID, "")
            c.go()
            c.structured = True
            check_eq(c.cmd(w.CMD_BLOCK_STATUS, 0, BS)[0], w.EINVAL, "after a failed SET")
        with go(d, structured=True, meta=["base:allocation"], export="") as c:
            err, payload = c.cmd(w.CMD_BLOCK_STATUS, 0, BS)
            check_eq(err, 0, "SET and GO on the default export name")


def case_oversized_option(tmp):
    """A 1 MiB option is skipped without buffering: NBD_REP_ERR_TOO_BIG, then the
    connection goes on."""
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        for opt in (w.OPT_INFO, w.OPT_SET_META_CONTEXT, 99):
            c.send_option(opt, os.urandom(MIB))
            o, rtype, _ = c.read_option_reply()
            check_eq((o, rtype), (opt, w.REP_ERR_TOO_BIG), f"1 MiB option {opt}")
        check_eq(c.go()[-1][0], w.REP_ACK, "GO after oversized options")
        still_works(c, "oversized options")


def case_abort(tmp):
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        check_eq(c.option(w.OPT_ABORT), [(w.REP_ACK, b"")], "ABORT")
        c.expect_closed()


def case_garbage_handshake(tmp):
    """Garbage closes only the connection that sent it; others keep working."""
    with daemon(tmp) as d:
        other = go(d)  # attached before the garbage
        garbage = [
            os.urandom(4096),                                       # instead of flags
            struct.pack(">I", 3) + os.urandom(64),                  # bad option magic
            struct.pack(">I", 3) + struct.pack(">QII", 0x1234, 7, 0),
        ]
        for g in garbage:
            with conn(d) as c:
                c.greeting()
                c.send(g)
                c.expect_closed()
            still_works(other, "another client sent garbage")
        with conn(d) as c:  # garbage before even reading the greeting
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
            c.greeting()
            c.expect_closed()
        with conn(d) as c:  # connect and vanish mid-option
            c.start()
            c.send(struct.pack(">QII", w.IHAVEOPT, w.OPT_GO, 100) + b"abc")
        still_works(other, "garbage clients")
        new_client_works(d, "garbage clients")
        other.close()


def case_many_options(tmp):
    """Option haggling is bounded but generous: 1000 options are fine."""
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        batch = b"".join(struct.pack(">QII", w.IHAVEOPT, w.OPT_LIST, 0) for _ in range(1000))
        c.send(batch)
        for i in range(1000):
            while True:
                _, rtype, _ = c.read_option_reply()
                if rtype == w.REP_ACK:
                    break
                check_eq(rtype, w.REP_SERVER, f"LIST {i}")
        check_eq(c.go()[-1][0], w.REP_ACK, "GO after 1000 options")


# --- Transmission --------------------------------------------------------------------------


def case_unknown_command(tmp):
    with daemon(tmp) as d:
        for structured in (False, True):
            with go(d, structured=structured) as c:
                for cmd in (8, 9, 100, 0xFFFF):  # RESIZE (not negotiated) and unknowns
                    err, _ = c.cmd(cmd, 0, BS, cookie=cmd)
                    check_eq(err, w.EINVAL, f"command type {cmd}")
                    still_works(c, f"command {cmd}")
                # Structured: the error travels as an NBD_REPLY_TYPE_ERROR chunk.
                if structured:
                    c.request(77, 0, 0, cookie=5)
                    kind, err, cookie, chunks = c.read_reply()
                    check_eq((kind, err, cookie), ("structured", w.EINVAL, 5), "error chunk")
                    check_eq(chunks[0][:2], (w.REPLY_FLAG_DONE, w.REPLY_TYPE_ERROR), "type")


def case_bad_request_magic(tmp):
    with daemon(tmp) as d:
        other = go(d)
        with go(d) as c:
            still_works(c, "GO")
            c.request(w.CMD_READ, 0, BS, magic=0x12345678)
            c.expect_closed()
        with go(d) as c:  # a WRITE's payload that is not a multiple of what it claims
            c.request(w.CMD_WRITE, 0, 10, payload=b"x" * 38)  # 28 extra bytes: bad header
            kind, err, _, _ = c.read_reply()
            check_eq(err, 0, "the WRITE itself")
            c.expect_closed()
        still_works(other, "a client with a bad magic")
        new_client_works(d, "a client with a bad magic")
        other.close()


def case_flush_and_lengths(tmp):
    """FLUSH must have offset and length 0; zero-length commands are harmless."""
    with daemon(tmp) as d:
        for structured in (False, True):
            with go(d, structured=structured) as c:
                check_eq(c.cmd(w.CMD_FLUSH)[0], 0, "FLUSH")
                check_eq(c.cmd(w.CMD_FLUSH, flags=w.CMD_FLAG_FUA)[0], 0, "FLUSH+FUA")
                check_eq(c.cmd(w.CMD_FLUSH, offset=4096)[0], w.EINVAL, "FLUSH offset 4096")
                check_eq(c.cmd(w.CMD_FLUSH, length=4096)[0], w.EINVAL, "FLUSH length 4096")
                still_works(c, "bad FLUSHes")
                check_eq(c.cmd(w.CMD_READ, 0, 0), (0, b""), "zero-length READ")
                check_eq(c.cmd(w.CMD_WRITE, 0, 0)[0], 0, "zero-length WRITE")
                check_eq(c.cmd(w.CMD_CACHE, SIZE, 0)[0], 0, "zero-length CACHE at the end")
                still_works(c, "zero-length requests")


def case_oversized_write(tmp):
    """A WRITE over 32 MiB is answered with an error after its payload was read, so the
    stream stays in frame; a bad WRITE (out of range, read-only flags) likewise."""
    with daemon(tmp) as d:
        for structured in (False, True):
            with go(d, structured=structured) as c:
                payload = b"\xab" * (32 * MIB + 1)
                c.request(w.CMD_WRITE, 0, len(payload), cookie=1, payload=payload)
                c.request(w.CMD_WRITE, SIZE - 1, 2, cookie=2, payload=b"\xab\xab")
                c.request(w.CMD_WRITE, 0, 3, flags=1 << 9, cookie=3, payload=b"\xab" * 3)
                c.request(w.CMD_READ, 0, 4, cookie=4)
                want = {1: w.EINVAL, 2: w.ENOSPC, 3: w.EINVAL}
                for _ in range(4):
                    kind, err, cookie, body = c.read_reply(read_length=4)
                    if cookie == 4:
                        data = body if kind == "simple" else w.assemble(body, 0, 4, w.CMD_READ)
                        check_eq((err, data), (0, bytes(4)), "READ after bad WRITEs")
                    else:
                        check_eq(err, want.pop(cookie), f"bad WRITE {cookie}")
                check_eq(want, {}, "replies to bad WRITEs")


def case_structured_reads(tmp):
    """READ replies: data chunks carry the right offsets; holes are OFFSET_HOLE chunks;
    DF forces one data chunk."""
    with daemon(tmp) as d, go(d, structured=True) as c:
        c.cmd(w.CMD_WRITE, 64 * 1024, BS, payload=b"\x5a" * BS)
        for flags in (0, w.CMD_FLAG_DF):
            c.request(w.CMD_READ, 0, 128 * 1024, flags=flags, cookie=9)
            kind, err, cookie, chunks = c.read_reply()
            check_eq((err, cookie), (0, 9), "READ")
            check(chunks[-1][0] & w.REPLY_FLAG_DONE, "last chunk lacks DONE")
            check(all(not (f & w.REPLY_FLAG_DONE) for f, _, _ in chunks[:-1]),
                  "DONE before the last chunk")
            types = [t for _, t, p in chunks if t != w.REPLY_TYPE_NONE]
            if flags:
                check_eq(types, [w.REPLY_TYPE_OFFSET_DATA], "DF chunks")
            else:
                check_eq(sorted(types), [1, 2, 2], f"chunk types {types}")
            data = w.assemble(chunks, 0, 128 * 1024, w.CMD_READ)
            want = bytes(64 * 1024) + b"\x5a" * BS + bytes(60 * 1024)
            check_eq(data, want, f"READ flags {flags}")


def case_disc(tmp):
    """NBD_CMD_DISC: requests sent before it are answered; then the server closes."""
    with daemon(tmp) as d:
        with go(d) as c:
            for i in range(20):
                c.request(w.CMD_WRITE, i * BS, BS, cookie=100 + i, payload=bytes([i]) * BS)
            c.request(w.CMD_DISC, cookie=999)
            seen = set()
            for _ in range(20):
                kind, err, cookie, _ = c.read_reply()
                check_eq(err, 0, f"WRITE {cookie}")
                seen.add(cookie)
            check_eq(seen, set(range(100, 120)), "replies before DISC")
            c.expect_closed()
        with go(d) as c:
            for i in range(20):
                check_eq(c.cmd(w.CMD_READ, i * BS, BS), (0, bytes([i]) * BS), f"block {i}")
        # DISC behind a burst bigger than the server's in-flight byte bound: the READs it
        # held back are still answered before the close.
        with go(d) as c:
            n = 64
            c.send(b"".join(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, i, 0,
                                        4 * MIB) for i in range(n)) +
                   struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_DISC, 999, 0, 0))
            cookies = set()
            for _ in range(n):
                kind, err, cookie, data = c.read_reply(read_length=4 * MIB)
                check_eq(err, 0, f"READ {cookie}")
                check_eq(data[:BS], bytes([0]) * BS, f"READ {cookie} data")
                cookies.add(cookie)
            check_eq(cookies, set(range(n)), "replies before DISC")
            c.expect_closed()


def case_pipelined_out_of_order(tmp):
    """Many requests back to back in one send: each gets exactly one reply, matched by
    cookie."""
    with daemon(tmp) as d:
        for structured in (False, True):
            with go(d, structured=structured) as c:
                n = 200
                batch = []
                for i in range(n):
                    batch.append(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_WRITE, i,
                                             i * BS, BS) + bytes([i % 256]) * BS)
                c.send(b"".join(batch))
                cookies = [c.read_reply()[2] for _ in range(n)]
                check_eq(sorted(cookies), list(range(n)), "WRITE replies")
                for i in range(n):
                    c.request(w.CMD_READ, i * BS, BS, cookie=i)
                got = {}
                for _ in range(n):
                    kind, err, cookie, body = c.read_reply(read_length=BS)
                    check_eq(err, 0, f"READ {cookie}")
                    got[cookie] = body if kind == "simple" else w.assemble(body, cookie * BS,
                                                                           BS, w.CMD_READ)
                for i in range(n):
                    check_eq(got[i], bytes([i % 256]) * BS, f"READ {i}")


def case_half_close(tmp):
    """A client that sends its requests and then shuts down its sending side still gets
    every reply (the server stops reading, not answering), then the connection closes."""
    import socket  # noqa: PLC0415
    with daemon(tmp) as d:
        for structured in (False, True):
            with go(d, structured=structured) as c:
                c.cmd(w.CMD_WRITE, 0, MIB, payload=b"\x3c" * MIB)
                n = 64
                c.send(b"".join(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, i, 0,
                                            4 * MIB) for i in range(n)))
                c.s.shutdown(socket.SHUT_WR)
                cookies = set()
                for _ in range(n):
                    kind, err, cookie, body = c.read_reply(read_length=4 * MIB)
                    check_eq(err, 0, f"READ {cookie} after half-close")
                    data = body if kind == "simple" else w.assemble(body, 0, 4 * MIB,
                                                                    w.CMD_READ)
                    check_eq(data[:MIB + 1], b"\x3c" * MIB + b"\0", f"READ {cookie} data")
                    cookies.add(cookie)
                check_eq(cookies, set(range(n)), "cookies")
                c.expect_closed()


def case_export_name_with_meta_context(tmp):
    """EXPORT_NAME (not GO) after STRUCTURED_REPLY and SET_META_CONTEXT: BLOCK_STATUS
    works, with the id the server gave."""
    with daemon(tmp) as d, conn(d) as c:
        c.start()
        c.structured_reply()
        replies = c.set_meta_context("portalbd", ["base:allocation"])
        ctx_id = struct.unpack(">I", replies[0][1][:4])[0]
        c.export_name("portalbd")
        c.structured = True
        err, payload = c.cmd(w.CMD_BLOCK_STATUS, 0, MIB)
        check_eq(err, 0, "BLOCK_STATUS after EXPORT_NAME")
        check_eq(w.parse_block_status(payload), (ctx_id, [(MIB, 3)]), "block status")


def case_abrupt_disconnects(tmp):
    """Clients that vanish mid-request, mid-payload or mid-reply (with a reset) free
    their slot; the server stays up, with a limit of 2 connections to prove it."""
    import socket  # noqa: PLC0415
    with Daemon(tmp, disk_size_gb=1, config="[nbd]\nmax_connections = 2\n") as d:
        def reset(c):
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        def go_retry(structured=False):  # unregistering may lag a close a little
            deadline = time.monotonic() + 10
            while True:
                try:
                    return go(d, structured)
                except (w.Closed, ConnectionError):
                    check(time.monotonic() < deadline, "slots not freed after disconnects")
                    time.sleep(0.05)

        for i in range(10):
            c = go_retry(structured=bool(i % 2))
            if i % 3 == 0:    # many big READs, replies unread
                c.send(b"".join(struct.pack(">IHHQQI", w.REQUEST_MAGIC, 0, w.CMD_READ, k, 0,
                                            8 * MIB) for k in range(32)))
            elif i % 3 == 1:  # half a WRITE payload
                c.request(w.CMD_WRITE, 0, 4 * MIB, payload=b"\x01" * (2 * MIB))
            else:             # half a request header
                c.send(struct.pack(">IHH", w.REQUEST_MAGIC, 0, w.CMD_READ))
            reset(c) if i % 2 else c.close()
        a, b = go_retry(), go_retry()  # both slots are free again
        still_works(a, "abrupt disconnects")
        still_works(b, "abrupt disconnects")
        # The half WRITEs were never applied.
        check_eq(a.cmd(w.CMD_READ, 0, 4096), (0, bytes(4096)), "half-sent WRITE applied")
        a.close()
        b.close()


if __name__ == "__main__":
    run_cases(globals())
