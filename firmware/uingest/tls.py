# TLS for http.Client, in a module of its own: a board posting over plain
# http (to `uingest serve` on the LAN) never loads it, nor ssl. It imports
# nothing from http (http imports it, only for an https URL): a certificate
# that does not verify is an OSError whose text says so, which http passes on
# as the RETRY outcome's detail like any other network error.
import ssl


def wrap(sock, host, ca_file=None, insecure=False, handshake=True):
    """sock (connected) wrapped in TLS for host, verified against ca_file
    (PEM or DER) unless insecure. Raises OSError("TLS certificate
    verification failed") when the server's certificate does not verify.
    handshake=False leaves the handshake to the first write, on a
    non-blocking socket polled to a deadline (MicroPython's blocking
    handshake gives each of its reads the whole time left: a server that
    drips its bytes held it for ever); name that write's error failed(e)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        if hasattr(ctx, "check_hostname"):
            ctx.check_hostname = False  # pyright: ignore[reportAttributeAccessIssue]
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_file:
            load_ca(ctx, ca_file)
        elif hasattr(ctx, "load_default_certs"):
            ctx.load_default_certs()
        if ":" in host or host.replace(".", "").isdigit():
            # an IP address: its check is code a board posting to a name never loads
            from .tlsip import require_ip_entry

            require_ip_entry(ctx, host)
    try:
        if handshake:
            return ctx.wrap_socket(sock, server_hostname=host)
        return ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except (OSError, ValueError) as e:
        raise failed(e)


def failed(e):
    """The error to raise for e, a failed handshake's: a certificate that
    could not be verified named as such, the same on both interpreters."""
    # CPython raises ssl.SSLCertVerificationError (an OSError and a
    # ValueError). MicroPython's mbedTLS raises ValueError with the multi-line
    # x509 verify info ("The certificate is not correctly signed by the
    # trusted CA", ...), also from a handshake run by a write;
    # OSError(-30336, MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED) when no CA was loaded
    # at all; OSError(-9984, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) without
    # verify info; OSError(-31232, MBEDTLS_ERR_SSL_BAD_CERTIFICATE) from
    # tlsip's check.
    if isinstance(e, ValueError) or (e.args and e.args[0] in (-9984, -30336, -31232)):
        return OSError("TLS certificate verification failed")
    return e


def load_ca(ctx, path):
    """Trust the CA certificate(s) in path, a PEM or a DER file."""
    # MicroPython's mbedTLS takes DER only where PEM parsing is compiled out
    # (the unix port says "invalid cert" to PEM) and one certificate per call;
    # CPython takes DER bytes as cadata too. So the file is read here and each
    # PEM certificate block is decoded to DER.
    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN" not in data:
        ctx.load_verify_locations(cadata=data)
        return
    from binascii import a2b_base64

    for block in data.split(b"-----BEGIN CERTIFICATE-----")[1:]:
        ctx.load_verify_locations(cadata=a2b_base64(block.split(b"-----END")[0]))
