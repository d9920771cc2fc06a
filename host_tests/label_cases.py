"""The one label rule (uingest.ingest.check_label), as a table shared by the tests of its three users: the
config check, the request headers and the collector (`uingest serve`).

Each case: (label, the stripped label when the service accepts it else None, the reason when it refuses it).
`ascii_only`: what a header carries as it is (the headers percent-encode the rest).
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
    ("idle\n", None, "label must not contain control or format characters: 'idle\\n'"),
    ("a\r\nx-evil: 1", None, "label must not contain control or format characters: 'a\\r\\nx-evil: 1'"),
    ("a\x00b", None, "label must not contain control or format characters: 'a\\x00b'"),
    ("a\tb", None, "label must not contain control or format characters: 'a\\tb'"),
    ("a\x7fb", None, "label must not contain control or format characters: 'a\\x7fb'"),
    # C1 controls, zero-width and direction marks, line separators, bidi embeddings and isolates, BOM: each
    # end of every range (by its UTF-8 bytes), and the characters just outside them, which are accepted
    ("a\x1bb", None, "label must not contain control or format characters: 'a\\x1bb'"),
    ("a\x80b", None, "label must not contain control or format characters: 'a\\x80b'"),
    ("a\x85b", None, "label must not contain control or format characters: 'a\\x85b'"),
    ("a\x9fb", None, "label must not contain control or format characters: 'a\\x9fb'"),
    ("a\u200bb", None, "label must not contain control or format characters: 'a\\u200bb'"),
    ("a\u200fb", None, "label must not contain control or format characters: 'a\\u200fb'"),
    ("a\u2028b", None, "label must not contain control or format characters: 'a\\u2028b'"),
    ("a\u2029b", None, "label must not contain control or format characters: 'a\\u2029b'"),
    ("a\u202ab", None, "label must not contain control or format characters: 'a\\u202ab'"),
    ("gpj.\u202eidle", None, "label must not contain control or format characters: 'gpj.\\u202eidle'"),
    ("a\u2066b", None, "label must not contain control or format characters: 'a\\u2066b'"),
    ("a\u2069b", None, "label must not contain control or format characters: 'a\\u2069b'"),
    ("\ufeffidle", None, "label must not contain control or format characters: '\\ufeffidle'"),
    (" idle\u200b ", None, "label must not contain control or format characters: ' idle\\u200b '"),
    ("a\xa0b", "a\xa0b", None),  # no-break space: C2 A0, just above C1
    ("a\u200ab", "a\u200ab", None),  # hair space: E2 80 8A, below U+200B
    ("a\u2010b", "a\u2010b", None),  # hyphen: E2 80 90, above U+200F
    ("a\u2027b", "a\u2027b", None),  # hyphenation point: E2 80 A7, below U+2028
    ("a\u202fb", "a\u202fb", None),  # narrow no-break space: E2 80 AF, above U+202E
    ("a\u2065b", "a\u2065b", None),  # E2 81 A5, below U+2066
    ("a\u206ab", "a\u206ab", None),  # E2 81 AA, above U+2069
    ("a\ufefeb", "a\ufefeb", None),  # EF BB BE, below U+FEFF
    ("a\u0100b", "a\u0100b", None),  # C4 80: a continuation byte 80 after another lead than C2
    ("x" * 129, None, "label is longer than 128 bytes"),
    ("x" * 200, None, "label is longer than 128 bytes"),
    ("\u00e9" * 65, None, "label is longer than 128 bytes"),
]


def ascii_only(label: str) -> bool:
    """True when every character is printable ASCII (what a header carries as it is)."""
    return all(32 <= ord(c) < 127 for c in label)


def ids(cases=LABEL_CASES):
    return [repr(c[0]) if len(c[0]) < 20 else "%r*%d" % (c[0][0], len(c[0])) for c in cases]
