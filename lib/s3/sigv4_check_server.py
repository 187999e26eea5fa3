#!/usr/bin/python3
"""A tiny S3 look-alike that checks the SigV4 signature of every request with botocore.

Used by lib/s3/sigv4_test.cc: the S3 client (libcurl's CURLOPT_AWS_SIGV4) talks to this
server on 127.0.0.1; for each request it recomputes the signature with Debian's
python3-botocore (botocore.auth.S3SigV4Auth) from what actually arrived on the wire, and
answers 403 SignatureDoesNotMatch (as S3 would) when it differs. It also checks what S3
checks around the signature: the x-amz-content-sha256 header against the body, the
credential scope, and that the path and query are in canonical form (botocore is given the
decoded query parameters and re-encodes them itself, as S3 does).

Every request appends one line to --log: "OK <method> <path> from=<client port>" or
"FAIL <method> <path>: <reason>".

Objects live in memory: PUT (with If-None-Match: *), GET (with Range), HEAD, DELETE and
ListObjectsV2 (prefix, start-after, max-keys, continuation-token, encoding-type=url) are
enough for the client's requests. Continuation tokens contain '+', '/' and '='.
"""
import argparse
import base64
import hashlib
import http.server
import socket
import threading
from urllib.parse import quote, quote_plus, unquote
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TOKEN_PREFIX = "tok+/="


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args):
        super().__init__(("127.0.0.1", args.port), Handler)
        self.args = args
        self.lock = threading.Lock()
        self.objects = {}  # (bucket, key) -> bytes

    def log_line(self, line):
        with self.lock, open(self.args.log, "a", encoding="utf-8") as f:
            f.write(line.replace("\n", "\\n") + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm holds the body until the client's delayed ACK (~40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *unused):
        pass

    # --- signature --------------------------------------------------------------------
    def verify(self, body):
        """Returns None if the request is signed correctly, else the reason."""
        args = self.server.args
        auth = self.headers.get("Authorization", "")
        algo, _, rest = auth.partition(" ")
        if algo != "AWS4-HMAC-SHA256":
            return "no AWS4-HMAC-SHA256 Authorization header"
        fields = dict(p.strip().split("=", 1) for p in rest.split(","))
        amz_date = self.headers.get("x-amz-date", "")
        scope = fields.get("Credential", "").split("/")
        if scope != [args.access_key, amz_date[:8], args.region, "s3", "aws4_request"]:
            return "bad credential scope " + fields.get("Credential", "")
        signed = fields.get("SignedHeaders", "").split(";")
        required = ["host", "x-amz-content-sha256", "x-amz-date"]
        if args.token:
            required.append("x-amz-security-token")
            if self.headers.get("x-amz-security-token") != args.token:
                return "missing or wrong x-amz-security-token"
        for name in required:
            if name not in signed:
                return "header %s is not signed" % name
        for name in signed:
            if name not in self.headers:
                return "signed header %s was not sent" % name
        payload = self.headers["x-amz-content-sha256"]
        if body:
            if payload != hashlib.sha256(body).hexdigest():
                return "x-amz-content-sha256 does not match the body"
        elif payload not in (EMPTY_SHA256, "UNSIGNED-PAYLOAD"):
            return "x-amz-content-sha256 of a bodiless request is " + payload
        raw_path, _, raw_query = self.path.partition("?")
        if quote(unquote(raw_path), safe="/~") != raw_path:
            return "path is not in canonical form: " + raw_path
        params = []
        for pair in raw_query.split("&") if raw_query else []:
            name, _, value = pair.partition("=")
            params.append((unquote(name), unquote(value)))
        request = AWSRequest(
            method=self.command,
            url="http://" + self.headers["host"] + raw_path,
            headers={name: self.headers[name] for name in signed},
            data=body,
            params=params,
        )
        request.context["timestamp"] = amz_date
        signer = S3SigV4Auth(
            Credentials(args.access_key, args.secret_key, args.token or None), "s3", args.region
        )
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        if signature != fields.get("Signature"):
            return "signature mismatch; botocore's canonical request:\n" + canonical
        return None

    # --- tiny S3 ----------------------------------------------------------------------
    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message=""):
        xml = "<Error><Code>%s</Code><Message>%s</Message></Error>" % (code, escape(message))
        self.reply(status, xml.encode(), [("Content-Type", "application/xml")])

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away mid-body (a test's kill -9 during an upload): like S3,
            # store nothing and answer nothing. Not a signing failure.
            self.server.log_line("TORN %s %s: %d of %d body bytes" % (self.command, self.path,
                                                                      len(body), length))
            self.close_connection = True
            return
        reason = self.verify(body)
        if reason:
            self.server.log_line("FAIL %s %s: %s" % (self.command, self.path, reason))
            return self.error(403, "SignatureDoesNotMatch", reason)
        self.server.log_line("OK %s %s from=%d" % (self.command, self.path, self.client_address[1]))
        raw_path, _, raw_query = self.path.partition("?")
        bucket, _, key = unquote(raw_path).lstrip("/").partition("/")
        query = {}
        for pair in raw_query.split("&") if raw_query else []:
            name, _, value = pair.partition("=")
            query[unquote(name)] = unquote(value)
        with self.server.lock:
            if not key:
                return self.list_objects(bucket, query)
            return self.object_request(bucket, key, body)

    def object_request(self, bucket, key, body):
        objects = self.server.objects
        data = objects.get((bucket, key))
        etag = '"%s"' % hashlib.md5(data if data is not None else body).hexdigest()
        if self.command == "PUT":
            if self.headers.get("If-None-Match") == "*" and data is not None:
                return self.error(412, "PreconditionFailed")
            objects[(bucket, key)] = body
            return self.reply(200, headers=[("ETag", etag)])
        if self.command == "DELETE":
            objects.pop((bucket, key), None)
            return self.reply(204)
        if data is None:
            return self.error(404, "NoSuchKey") if self.command == "GET" else self.reply(404)
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", etag)
            return self.end_headers()
        rng = self.headers.get("Range")
        if not rng:
            return self.reply(200, data, [("ETag", etag)])
        first, _, last = rng[len("bytes="):].partition("-")
        first = int(first)
        last = min(int(last), len(data) - 1) if last else len(data) - 1
        if first >= len(data):
            return self.error(416, "InvalidRange")
        return self.reply(
            206, data[first:last + 1], [("Content-Range", "bytes %d-%d/%d" % (first, last, len(data)))]
        )

    def list_objects(self, bucket, query):
        if query.get("list-type") != "2":
            return self.error(400, "InvalidRequest", "only ListObjectsV2")
        prefix = query.get("prefix", "")
        after = query.get("start-after", "")
        token = query.get("continuation-token")
        if token:
            if not token.startswith(TOKEN_PREFIX):
                return self.error(400, "InvalidArgument", "bad continuation token")
            after = base64.b64decode(token[len(TOKEN_PREFIX):]).decode()
        max_keys = int(query.get("max-keys", "1000"))
        keys = sorted(k for (b, k) in self.server.objects if b == bucket)
        keys = [k for k in keys if k.startswith(prefix) and k > after]
        page, more = keys[:max_keys], len(keys) > max_keys
        url = query.get("encoding-type") == "url"
        out = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>"]
        out.append("<Name>%s</Name><KeyCount>%d</KeyCount>" % (escape(bucket), len(page)))
        if url:
            out.append("<EncodingType>url</EncodingType>")
        out.append("<IsTruncated>%s</IsTruncated>" % ("true" if more else "false"))
        for k in page:
            data = self.server.objects[(bucket, k)]
            shown = quote_plus(k, safe="/") if url else escape(k)
            out.append("<Contents><Key>%s</Key><Size>%d</Size><ETag>&quot;%s&quot;</ETag>"
                       "</Contents>" % (shown, len(data), hashlib.md5(data).hexdigest()))
        if more:
            next_token = TOKEN_PREFIX + base64.b64encode(page[-1].encode()).decode()
            out.append("<NextContinuationToken>%s</NextContinuationToken>" % escape(next_token))
        out.append("</ListBucketResult>")
        return self.reply(200, "".join(out).encode(), [("Content-Type", "application/xml")])

    do_GET = do_PUT = do_HEAD = do_DELETE = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--log", required=True)
    Server(parser.parse_args()).serve_forever()


if __name__ == "__main__":
    main()
