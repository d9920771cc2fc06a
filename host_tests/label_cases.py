"""The one label rule (uingest.ingest.check_label), as a table shared by the tests of its three users: the
config check, the request headers and the collector (`uingest serve`).

Each case: (label, the stripped label when the service accepts it else None, the reason when it refuses it).
The config and the headers also need printable ASCII (until x-label is percent-encoded): `ascii_only`.
"""

LABEL_CASES = [
    ("idle", "idle", None),
    ("left wave", "left wave", None),
    ("up-down_2", "up-down_2", None),
    (" idle ", "idle", None),
    ("idle.", "idle.", None),
    ("a.b", "a.b", None),
    ("x" * 128, "x" * 128, None),
    ("caf\u00e9", "caf\u00e9", None),
    ("\u00e9" * 64, "\u00e9" * 64, None),  # 128 UTF-8 bytes
    ("", None, "label is empty"),
    ("   ", None, "label is empty"),
    (".idle", None, "label must not start with '.': '.idle'"),
    (" .idle", None, "label must not start with '.': '.idle'"),
    ("a/b", None, "label must not contain '/' or '\\': 'a/b'"),
    ("a\\b", None, "label must not contain '/' or '\\': 'a\\\\b'"),
    ("../x", None, "label must not contain '/' or '\\': '../x'"),
    ("idle\n", None, "label must not contain control characters: 'idle\\n'"),
    ("a\r\nx-evil: 1", None, "label must not contain control characters: 'a\\r\\nx-evil: 1'"),
    ("a\x00b", None, "label must not contain control characters: 'a\\x00b'"),
    ("a\tb", None, "label must not contain control characters: 'a\\tb'"),
    ("a\x7fb", None, "label must not contain control characters: 'a\\x7fb'"),
    ("x" * 129, None, "label is longer than 128 bytes"),
    ("x" * 200, None, "label is longer than 128 bytes"),
    ("\u00e9" * 65, None, "label is longer than 128 bytes"),
]


def ascii_only(label: str) -> bool:
    """True when every character is printable ASCII (what a header carries as it is)."""
    return all(32 <= ord(c) < 127 for c in label)


def ids(cases=LABEL_CASES):
    return [repr(c[0]) if len(c[0]) < 20 else "%r*%d" % (c[0][0], len(c[0])) for c in cases]
