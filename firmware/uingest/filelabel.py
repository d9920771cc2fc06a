# The service's rule for the label of a sample sent without one: from its
# file name. It lives here, beside uingest.ingest's label and file-name rules,
# so the firmware holds every label rule the service applies and uingest serve
# applies this copy; no board imports it (in ingest it cost the IMU cycle 1K of
# RAM, and a board always names its label).


def _label_byte(c):
    # the service's ^[a-zA-Z0-9\s\-_]+ (ASCII: \s is space, \t \n \v \f \r)
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c in b" \t\n\x0b\x0c\r-_"


def label_from_filename(name):
    """The label the service infers from a file name: the longest prefix of
    its last path part ('/' or '\\') made of ASCII letters, digits,
    whitespace, '-' and '_' ('idle.01.cbor' -> 'idle'); None when it starts
    with none of them."""
    base = name[max(name.rfind("/"), name.rfind("\\")) + 1 :]
    b = base.encode()
    n = 0
    while n < len(b) and _label_byte(b[n]):
        n += 1
    return b[:n].decode() if n else None
