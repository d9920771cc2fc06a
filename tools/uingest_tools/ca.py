"""`uingest ca URL`: the CA certificate a board needs to verify an https server.

MicroPython has no built-in list of trusted certificate authorities: a board
checks the server only against the file its config names as ca_file. This
connects from the computer, verifies the server (its name and its chain) against
a trust store (the system's, or --trust FILE), and writes the root certificate
that anchors the chain, as DER, for `uingest deploy` to copy next to
config.json. A root outlives the server's own certificate and intermediates,
which are renewed every few months.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import sys
from urllib.parse import urlsplit

from .common import ArgumentParser


class CAError(Exception):
    """One line for the user."""


def _der(cert) -> bytes:
    # Python 3.13 lists DER bytes; 3.10-3.12 have the same call, private, listing
    # _ssl.Certificate objects
    return cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]


def verified_chain(url: str, trust: str | None = None, timeout: float = 10.0) -> list[bytes]:
    """The chain (DER, server first, trust anchor last) that verifies url's
    server against trust (a PEM file) or the system's CAs."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise CAError("ca: expected an https://host[:port] URL, got %r" % url)
    host, port = parts.hostname, parts.port or 443
    try:
        ctx = ssl.create_default_context(cafile=trust)
    except (OSError, ssl.SSLError) as e:
        raise CAError("ca: cannot read the trust store %s: %s" % (trust, getattr(e, "strerror", None) or e))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                get = getattr(s, "get_verified_chain", None) or s._sslobj.get_verified_chain  # type: ignore[union-attr]
                return [_der(c) for c in get()]
    except ssl.SSLCertVerificationError as e:
        store = trust or "the system's CAs"
        why = e.verify_message
        raise CAError("ca: %s: the server's certificate does not verify against %s: %s" % (url, store, why))
    except (OSError, ssl.SSLError) as e:
        raise CAError("ca: %s: cannot connect: %s" % (url, getattr(e, "strerror", None) or e))


def describe(der: bytes) -> str:
    try:
        from cryptography import x509
    except ImportError:
        return "a certificate"
    cert = x509.load_der_x509_certificate(der)
    return "%s, valid until %s" % (cert.subject.rfc4514_string(), cert.not_valid_after_utc.date().isoformat())


def main(argv=None) -> int:
    ap = ArgumentParser(
        prog="uingest ca",
        description="Fetch and verify an https server's root CA certificate, as the DER file a board's "
        "config names as ca_file.",
        epilog="example: uingest ca https://ingestion.edgeimpulse.com --out ca.der",
    )
    ap.add_argument("url", help="the https URL the board posts to")
    ap.add_argument("--out", default="ca.der", help="where to write the certificate (default ca.der)")
    ap.add_argument("--trust", help="PEM file of CAs to verify against (default: the system's)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    args = ap.parse_args(argv)
    try:
        chain = verified_chain(args.url, args.trust, args.timeout)
        root = chain[-1]
        with open(args.out + ".tmp", "wb") as f:
            f.write(root)
        os.replace(args.out + ".tmp", args.out)
    except CAError as e:
        print(e, file=sys.stderr)
        return 1
    except OSError as e:
        print("ca: cannot write %s: %s" % (args.out, e.strerror or e), file=sys.stderr)
        return 1
    print(
        "ca: wrote %s (%d bytes): %s, the root of %s's chain (checked %s); "
        'keep it next to config.json, with "ca_file": "%s" there'
        % (
            args.out,
            len(root),
            describe(root),
            urlsplit(args.url).hostname,
            datetime.date.today().isoformat(),
            os.path.basename(args.out),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
