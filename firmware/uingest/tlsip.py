# TLS to an IP address: the address must be one of the server certificate's
# IP entries, as CPython (OpenSSL) checks it. mbedTLS also compares it as
# text with the DNS entries ("*.0.0.1" and a DNS name "127.0.0.1" match
# 127.0.0.1 there), so on MicroPython the server's certificate is checked
# here too. Loaded by tls only for an IP host: a board posting to a name
# never pays for it in RAM.


def require_ip_entry(ctx, host):
    """On MicroPython's ssl context ctx, refuse a server certificate without
    host (an IPv4 or IPv6 literal) among its IP entries. CPython needs
    nothing: OpenSSL already does this."""
    ip = _ip_bytes(host)
    mbedtls = getattr(ctx, "_context", None)  # MicroPython's ssl.SSLContext wraps a tls.SSLContext
    if ip is None or mbedtls is None:
        return

    # mbedTLS calls this for each certificate of the chain; nothing may raise in it
    def leaf_has_ip(cert, depth):
        try:
            if depth or _has_ip_entry(cert, ip):
                return 0
        except Exception:
            pass
        # a callback's error ends the handshake as it is, but mbedTLS turns
        # CERT_VERIFY_FAILED into X509_FATAL_ERROR: this one it passes on
        return -31232  # MBEDTLS_ERR_SSL_BAD_CERTIFICATE

    try:
        mbedtls.verify_callback = leaf_has_ip
    except AttributeError:
        raise OSError("TLS to an IP address needs a MicroPython whose tls has verify_callback") from None


def _ip_bytes(host):
    """host as 4 or 16 address bytes when it is an IPv4 or IPv6 literal, else
    None (a name). A host with ':' that does not parse is b"" (no entry is)."""
    if ":" not in host:
        parts = host.split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) < 4 and int(p) < 256 for p in parts):
            return None
        return bytes(int(p) for p in parts)
    try:
        if "::" in host:
            head, tail = host.split("::")  # ValueError for a second "::"
            head = head.split(":") if head else []
            tail = tail.split(":") if tail else []
            groups = head + ["0"] * (8 - len(head) - len(tail)) + tail
        else:
            groups = host.split(":")
        out = bytearray()
        for g in groups:
            n = int(g, 16)
            if not 0 < len(g) < 5 or n < 0:
                return b""
            out.append(n >> 8)
            out.append(n & 0xFF)
        return bytes(out) if len(out) == 16 else b""
    except ValueError:
        return b""


def _tlv(d, i):
    """(tag, start, end) of the value of the DER element at d[i]."""
    tag, n = d[i], d[i + 1]
    i += 2
    if n & 0x80:  # long form: the length is in the next n & 0x7F bytes
        k, n = n & 0x7F, 0
        for j in range(i, i + k):
            n = n << 8 | d[j]
        i += k
    return tag, i, i + n


def _has_ip_entry(der, ip):
    """True when the certificate der (DER bytes or memoryview) has ip among
    the iPAddress entries of its subjectAltName extension."""
    i = _tlv(der, 0)[1]  # into the Certificate
    _, i, end = _tlv(der, i)  # into the TBSCertificate: version, serial, ..., [3] extensions
    while i < end:
        tag, a, i = _tlv(der, i)
        if tag != 0xA3:
            continue
        _, a, end = _tlv(der, a)  # Extensions, a SEQUENCE of Extension
        while a < end:
            _, e, a = _tlv(der, a)  # Extension: extnID, critical (optional), extnValue
            if bytes(der[e : e + 5]) != b"\x06\x03\x55\x1d\x11":  # OID 2.5.29.17, subjectAltName
                continue
            tag, v, e = _tlv(der, e + 5)
            if tag == 0x01:  # critical
                tag, v, e = _tlv(der, e)
            _, v, e = _tlv(der, v)  # the extnValue OCTET STRING holds GeneralNames, a SEQUENCE
            while v < e:
                tag, n, v = _tlv(der, v)
                if tag == 0x87 and bytes(der[n:v]) == ip:  # [7] iPAddress
                    return True
            return False
        return False
    return False
