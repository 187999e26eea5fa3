"""A byte-level NBD client for the raw protocol tests: it sends exactly what it is told,
including what libnbd refuses to send. Numbers are the spec's (doc/proto.md)."""

import select
import socket
import struct

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# Transmission flags.
TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_ROTATIONAL = 1 << 4
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_SEND_DF = 1 << 7
TF_CAN_MULTI_CONN = 1 << 8
TF_SEND_RESIZE = 1 << 9
TF_SEND_CACHE = 1 << 10
TF_SEND_FAST_ZERO = 1 << 11

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_PEEK_EXPORT = 4
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR = 1 << 31
REP_ERR_UNSUP = REP_ERR | 1
REP_ERR_POLICY = REP_ERR | 2
REP_ERR_INVALID = REP_ERR | 3
REP_ERR_PLATFORM = REP_ERR | 4
REP_ERR_TLS_REQD = REP_ERR | 5
REP_ERR_UNKNOWN = REP_ERR | 6
REP_ERR_SHUTDOWN = REP_ERR | 7
REP_ERR_BLOCK_SIZE_REQD = REP_ERR | 8
REP_ERR_TOO_BIG = REP_ERR | 9

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

REPLY_FLAG_DONE = 1
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) | 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108


class Closed(Exception):
    """The server closed the connection."""


class Conn:
    """One connection. Every read has a timeout so that a silent server fails the test
    instead of hanging it."""

    def __init__(self, sock, timeout=10):
        self.s = sock
        self.s.settimeout(timeout)
        self.structured = False
        self.size = None
        self.tflags = None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    # --- bytes ---
    def send(self, data):
        self.s.sendall(data)

    def recv_exact(self, n):
        chunks = []
        left = n
        while left > 0:
            try:
                b = self.s.recv(min(left, 1 << 20))
            except ConnectionResetError as e:
                raise Closed(f"connection reset with {left} of {n} bytes outstanding") from e
            if not b:
                raise Closed(f"EOF with {left} of {n} bytes outstanding")
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)

    def wait_readable(self, timeout=10):
        """Blocks until the server has sent something (without consuming it)."""
        r, _, _ = select.select([self.s], [], [], timeout)
        assert r, f"nothing from the server within {timeout} s"

    def expect_closed(self, timeout=5):
        """True if the server closes the connection (EOF or reset) within `timeout`
        without sending anything more; any other outcome fails."""
        self.s.settimeout(timeout)
        try:
            b = self.s.recv(4096)
        except ConnectionResetError:
            return True
        except socket.timeout as e:
            raise AssertionError(f"server did not close the connection within {timeout} s"
                                 ) from e
        if b:
            raise AssertionError(f"expected the connection to close, got bytes {b[:64]!r}")
        return True

    # --- handshake ---
    def greeting(self):
        magic, opt, flags = struct.unpack(">QQH", self.recv_exact(18))
        assert magic == NBDMAGIC, f"bad NBDMAGIC {magic:#x}"
        assert opt == IHAVEOPT, f"not newstyle: {opt:#x}"
        return flags

    def client_flags(self, flags=FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES):
        self.send(struct.pack(">I", flags))

    def start(self, flags=FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES):
        hflags = self.greeting()
        self.client_flags(flags)
        return hflags

    def send_option(self, option, data=b"", magic=IHAVEOPT, length=None):
        length = len(data) if length is None else length
        self.send(struct.pack(">QII", magic, option, length) + data)

    def read_option_reply(self):
        magic, option, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
        assert magic == OPT_REPLY_MAGIC, f"bad option reply magic {magic:#x}"
        assert length <= 1 << 20, f"option reply length {length} is absurd"
        return option, rtype, self.recv_exact(length)

    def option(self, option, data=b""):
        """Sends an option and collects replies up to the final one (ACK or an error).
        Returns (list of (type, payload)) with the final reply last."""
        self.send_option(option, data)
        replies = []
        while True:
            opt, rtype, payload = self.read_option_reply()
            assert opt == option, f"reply for option {opt}, expected {option}"
            replies.append((rtype, payload))
            if rtype == REP_ACK or rtype & REP_ERR:
                return replies

    def structured_reply(self):
        replies = self.option(OPT_STRUCTURED_REPLY)
        assert replies == [(REP_ACK, b"")], f"STRUCTURED_REPLY: {replies}"
        self.structured = True

    def set_meta_context(self, export, queries):
        replies = self.option(OPT_SET_META_CONTEXT, meta_request(export, queries))
        return replies

    def go(self, export="portalbd", infos=(), option=OPT_GO):
        """NBD_OPT_GO (or INFO). Returns the replies; on a successful GO, records size and
        transmission flags."""
        replies = self.option(option, info_request(export, infos))
        final = replies[-1][0]
        if final == REP_ACK:
            for rtype, p in replies:
                if rtype == REP_INFO and struct.unpack(">H", p[:2])[0] == INFO_EXPORT:
                    self.size, self.tflags = struct.unpack(">QH", p[2:12])
        return replies

    def export_name(self, name, no_zeroes=True):
        self.send_option(OPT_EXPORT_NAME, name.encode())
        self.size, self.tflags = struct.unpack(">QH", self.recv_exact(10))
        if not no_zeroes:
            zeroes = self.recv_exact(124)
            assert zeroes == bytes(124), "EXPORT_NAME padding is not zero"

    # --- transmission ---
    def request(self, cmd, offset=0, length=0, flags=0, cookie=1, payload=b"",
                magic=REQUEST_MAGIC):
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, cookie, offset, length) + payload)

    def read_reply(self, read_length=None):
        """One reply. Simple: ('simple', error, cookie, data). Structured: the chunks of
        one request up to DONE: ('structured', error, cookie, chunks) where chunks are
        (flags, type, payload) and error is that of an error chunk (else 0).
        read_length: for a simple reply to a READ, how many data bytes follow."""
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if magic == SIMPLE_REPLY_MAGIC:
            error, cookie = struct.unpack(">IQ", self.recv_exact(12))
            data = b""
            if error == 0 and read_length:
                data = self.recv_exact(read_length)
            return ("simple", error, cookie, data)
        assert magic == STRUCTURED_REPLY_MAGIC, f"bad reply magic {magic:#x}"
        chunks = []
        error = 0
        cookie = None
        while True:
            if chunks:
                m = struct.unpack(">I", self.recv_exact(4))[0]
                assert m == STRUCTURED_REPLY_MAGIC, f"bad chunk magic {m:#x}"
            flags, rtype, ck, length = struct.unpack(">HHQI", self.recv_exact(16))
            assert cookie is None or ck == cookie, "chunks of different requests interleaved"
            cookie = ck
            payload = self.recv_exact(length)
            if rtype & (1 << 15):
                error = struct.unpack(">I", payload[:4])[0]
            chunks.append((flags, rtype, payload))
            if flags & REPLY_FLAG_DONE:
                return ("structured", error, cookie, chunks)

    def cmd(self, cmd, offset=0, length=0, flags=0, cookie=1, payload=b""):
        """Sends one request and reads its reply. Returns (error, data) where data is the
        READ's bytes reassembled from chunks (holes as zeroes) or the BLOCK_STATUS chunk
        payload."""
        self.request(cmd, offset, length, flags, cookie, payload)
        kind, error, ck, body = self.read_reply(length if cmd == CMD_READ else None)
        assert ck == cookie, f"reply cookie {ck} for request {cookie}"
        if kind == "simple":
            return error, body
        return error, assemble(body, offset, length, cmd)


def assemble(chunks, offset, length, cmd):
    if cmd != CMD_READ:
        for _, rtype, p in chunks:
            if rtype == REPLY_TYPE_BLOCK_STATUS:
                return p
        return b""
    buf = bytearray(length)
    covered = 0
    for _, rtype, p in chunks:
        if rtype == REPLY_TYPE_OFFSET_DATA:
            off = struct.unpack(">Q", p[:8])[0] - offset
            data = p[8:]
            assert 0 <= off and off + len(data) <= length, "data chunk outside the request"
            buf[off:off + len(data)] = data
            covered += len(data)
        elif rtype == REPLY_TYPE_OFFSET_HOLE:
            off, hlen = struct.unpack(">QI", p[:12])
            assert 0 <= off - offset and off - offset + hlen <= length, "hole outside request"
            covered += hlen
    return bytes(buf)


def info_request(export, infos=()):
    name = export.encode()
    return (struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) +
            b"".join(struct.pack(">H", i) for i in infos))


def meta_request(export, queries):
    name = export.encode()
    out = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    for q in queries:
        qb = q.encode() if isinstance(q, str) else q
        out += struct.pack(">I", len(qb)) + qb
    return out


def parse_infos(replies):
    """{info type: payload after the type} of the NBD_REP_INFO replies."""
    out = {}
    for rtype, p in replies:
        if rtype == REP_INFO:
            out[struct.unpack(">H", p[:2])[0]] = p[2:]
    return out


def parse_block_status(payload):
    """(context id, [(length, flags), ...])."""
    ctx = struct.unpack(">I", payload[:4])[0]
    body = payload[4:]
    assert len(body) % 8 == 0, "block status descriptors are 8 bytes each"
    return ctx, [struct.unpack(">II", body[i:i + 8]) for i in range(0, len(body), 8)]
