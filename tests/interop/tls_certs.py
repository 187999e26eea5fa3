"""Certificates for the TLS tests (interop/test_tls.py, trace/test_trace_record_tls.py),
made with the openssl CLI as a user would: an EC P-256 CA, and certificates it signs."""

import os

from harness import run


def openssl(*args, cwd):
    run(["openssl", *args], cwd=cwd)


def make_ca(d, name):
    """A CA in d: ca-cert.pem, ca-key.pem."""
    os.makedirs(d, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca-key.pem", "-out", "ca-cert.pem", "-days", "2", "-subj",
            f"/CN={name}", cwd=d)
    return d


def sign(ca, d, prefix, cn, ext):
    """prefix-cert.pem and prefix-key.pem in d, signed by the CA in `ca`."""
    os.makedirs(d, exist_ok=True)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{prefix}-key.pem", "-out", f"{prefix}.csr", "-subj", f"/CN={cn}",
            cwd=d)
    with open(os.path.join(d, f"{prefix}.ext"), "w") as f:
        f.write(ext)
    openssl("x509", "-req", "-in", f"{prefix}.csr", "-CA", os.path.join(ca, "ca-cert.pem"),
            "-CAkey", os.path.join(ca, "ca-key.pem"), "-CAcreateserial", "-out",
            f"{prefix}-cert.pem", "-days", "2", "-extfile", f"{prefix}.ext", cwd=d)
