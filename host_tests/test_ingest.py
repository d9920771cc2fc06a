"""uingest.ingest: endpoints, headers, the label and file-name rules."""

import json
import urllib.parse

import pytest

from label_cases import LABEL_CASES, ascii_only, ids
from uingest import ingest

KEY = "ei_0123456789abcdef"


def test_default_headers():
    h = ingest.headers(KEY, label="idle")
    assert h == {
        "x-api-key": KEY,
        "Content-Type": "application/cbor",
        "x-label": "idle",
        "x-file-name": "idle.cbor",
        "x-disallow-duplicates": "1",
    }


def test_all_options():
    h = ingest.headers(
        KEY,
        file_name="x.01.json",
        no_label=True,
        fmt="json",
        disallow_duplicates=False,
        add_date_id=True,
        metadata={"site": "hall 3", "rev": "2"},
    )
    assert h["Content-Type"] == "application/json"
    assert h["x-no-label"] == "1" and "x-label" not in h
    assert h["x-file-name"] == "x.01.json"
    assert "x-disallow-duplicates" not in h
    assert h["x-add-date-id"] == "1"
    assert json.loads(h["x-metadata"]) == {"site": "hall 3", "rev": "2"}


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        (("",), {}, "api_key"),
        ((None,), {}, "api_key"),
        ((KEY,), dict(label="a\r\nx-evil: 1"), "label must not contain control"),
        ((KEY,), dict(label="idle\n"), "label must not contain control"),
        ((KEY,), dict(file_name="a\x00b"), "x-file-name: invalid file name"),
        ((KEY,), dict(file_name="../../x"), "x-file-name"),
        ((KEY,), dict(label="idle", no_label=True), "no_label"),
        ((KEY,), dict(label=""), "label"),
        ((KEY,), dict(fmt="xml"), "fmt"),
        ((KEY,), dict(metadata={"a": 1}), "metadata"),
        (("ei_\n123",), {}, "api_key"),
    ],
)
def test_bad_headers_raise_and_say_what_is_allowed(args, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        ingest.headers(*args, **kwargs)
    assert "123" not in str(e.value)  # never echo the key


def test_metadata_newlines_are_escaped_not_sent():
    h = ingest.headers(KEY, metadata={"note": "two\nlines"})
    assert "\n" not in h["x-metadata"] and json.loads(h["x-metadata"]) == {"note": "two\nlines"}


def test_endpoint():
    assert ingest.endpoint("http://127.0.0.1:4810", "training") == "http://127.0.0.1:4810/api/training/data"
    assert ingest.endpoint("https://ingestion.edgeimpulse.com/", "anomaly") == (
        "https://ingestion.edgeimpulse.com/api/anomaly/data"
    )
    assert ingest.endpoint(ingest.DEFAULT_URL, "split", "files").endswith("/api/split/files")
    assert ingest.endpoint("http://h", "split") == "http://h/api/split/data"  # as the data forwarder posts


@pytest.mark.parametrize(
    "args,match",
    [
        (("http://h", "train"), "category: expected one of training, testing, anomaly, split, got 'train'"),
        (("http://h", "training", "blob"), "kind"),
        (("ftp://h", "training"), "base_url"),
    ],
)
def test_bad_endpoint(args, match):
    with pytest.raises(ValueError, match=match):
        ingest.endpoint(*args)


@pytest.mark.parametrize("label,stripped,reason", LABEL_CASES, ids=ids())
def test_check_label(label, stripped, reason):
    if stripped is not None:
        assert ingest.check_label(label) == stripped
    else:
        with pytest.raises(ValueError) as e:
            ingest.check_label(label)
        assert str(e.value) == reason


@pytest.mark.parametrize("label,stripped,reason", LABEL_CASES, ids=ids())
def test_headers_send_every_label_the_service_accepts_percent_encoded_when_not_plain(label, stripped, reason):
    if stripped is None:
        with pytest.raises(ValueError) as e:
            ingest.headers(KEY, label=label)
        assert str(e.value) == reason
        return
    sent = ingest.headers(KEY, label=label)["x-label"]
    assert all(32 <= ord(c) < 127 for c in sent)  # a header carries it as it is
    assert urllib.parse.unquote(sent, errors="strict") == label  # decoded by the service and uingest serve
    if ascii_only(label) and "%" not in label:
        assert sent == label
    else:  # JavaScript's encodeURIComponent, as Edge Impulse's uploader sends labels
        assert sent == urllib.parse.quote(label, safe="-_.!~*'()")


def test_a_unicode_file_name_is_percent_encoded_too():
    h = ingest.headers(KEY, label="caf\u00e9 \u2615")
    assert h["x-file-name"] == "caf%C3%A9%20%E2%98%95.cbor"
    assert ingest.headers(KEY, label="50% idle")["x-label"] == "50%25%20idle"


@pytest.mark.parametrize(
    "name,reason",
    [
        ("idle.01.cbor", None),
        ("caf\u00e9.json", None),
        ("x" * 255, None),
        ("", "file name is empty"),
        ("x" * 256, "file name is longer than 255 bytes"),
        ("../../x", "invalid file name '../../x': must be a plain name without '/', '\\', '..' or controls"),
        ("a\\b", "invalid file name 'a\\\\b': must be a plain name without '/', '\\', '..' or controls"),
        ("..", "invalid file name '..': must be a plain name without '/', '\\', '..' or controls"),
        ("a\x00b", "invalid file name 'a\\x00b': must be a plain name without '/', '\\', '..' or controls"),
        ("a\x1b.cbor", "invalid file name 'a\\x1b.cbor': must be a plain name without '/', '\\', '..' or controls"),
        ("a\x85.cbor", "invalid file name 'a\\x85.cbor': must be a plain name without '/', '\\', '..' or controls"),
        ("a\u200b.cbor", "invalid file name 'a\\u200b.cbor': must be a plain name without '/', '\\', '..' or controls"),
        ("a\u2028.cbor", "invalid file name 'a\\u2028.cbor': must be a plain name without '/', '\\', '..' or controls"),
        (
            "r\u202egpj.exe",
            "invalid file name 'r\\u202egpj.exe': must be a plain name without '/', '\\', '..' or controls",
        ),
        ("a\u2068.cbor", "invalid file name 'a\\u2068.cbor': must be a plain name without '/', '\\', '..' or controls"),
        ("\ufeffa.cbor", "invalid file name '\\ufeffa.cbor': must be a plain name without '/', '\\', '..' or controls"),
        ("a\u202f.cbor", None),  # narrow no-break space, beside the bidi embeddings
    ],
)
def test_check_file_name(name, reason):
    if reason is None:
        assert ingest.check_file_name(name) == name
    else:
        with pytest.raises(ValueError) as e:
            ingest.check_file_name(name)
        assert str(e.value) == reason
        if ascii_only(name) and name:
            with pytest.raises(ValueError, match="^x-file-name: "):
                ingest.headers(KEY, file_name=name)


def test_the_label_rule_is_the_same_on_micropython(mpy):
    stdin = "".join(json.dumps(label) + "\n" for label, _, _ in LABEL_CASES).encode()
    out = [json.loads(line) for line in mpy.run_program("check_labels.py", stdin=stdin).stdout.decode().splitlines()]
    assert out == [
        [stripped, reason, ingest.headers(KEY, label=label)["x-label"] if stripped is not None else None]
        for label, stripped, reason in LABEL_CASES
    ]


def test_the_label_from_a_file_name_is_the_services_regex_on_micropython(mpy):
    """uingest.filelabel, the firmware's copy of the service's rule (uingest serve applies it), on the unix port:
    hand-picked names and random ASCII ones against the service's own regex, ^[a-zA-Z0-9\\s-_]+ of the last path
    part."""
    import random
    import re

    rng = random.Random(13)
    names = ["wave.1.cbor", "idle.01.cbor", "my file_2-b.json", "updown", "data/idle.3.cbor", "a\\b\\c.d", ".cbor"]
    names += ["caf\u00e9.1.cbor", "\u00e9t\u00e9.cbor", "tab\there.cbor", "x/y/", "", "-_ .wav", "a\x0bb\x0cc.d"]
    names += ["".join(chr(rng.randrange(1, 128)) for _ in range(rng.randrange(1, 12))) for _ in range(300)]
    stdin = "".join(json.dumps(n) + "\n" for n in names).encode()
    ran = mpy.run_program("labels_from_filenames.py", stdin=stdin)
    out = [json.loads(line) for line in ran.stdout.decode().splitlines()]

    def service(name):
        m = re.match(r"[a-zA-Z0-9\s\-_]+", re.split(r"[/\\]", name)[-1], re.ASCII)
        return m.group(0) if m else None

    assert out == [service(n) for n in names]
