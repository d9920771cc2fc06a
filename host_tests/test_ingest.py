"""uingest.ingest: endpoints, headers, the label rule."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uingest import ingest

KEY = "ei_0123456789abcdef"


@pytest.mark.parametrize(
    "name,label",
    [
        ("idle.01", "idle"),
        ("wave.1.cbor", "wave"),
        ("idle.01.cbor", "idle"),
        ("my file_2-b.json", "my file_2-b"),
        ("updown", "updown"),
        ("data/idle.3.cbor", "idle"),
        (".cbor", None),
        ("caf\u00e9.1.cbor", "caf"),
    ],
)
def test_label_from_filename(name, label):
    assert ingest.label_from_filename(name) == label


@given(st.text(alphabet=st.characters(max_codepoint=127, blacklist_characters="/\\"), min_size=1))
def test_label_rule_matches_the_services_regex(name):
    m = re.match(r"^[a-zA-Z0-9\s\-_]+", name, re.ASCII)
    assert ingest.label_from_filename(name) == (m.group(0) if m else None)


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
        ((KEY,), dict(label="a\r\nx-evil: 1"), "x-label: control"),
        ((KEY,), dict(label="idle\n"), "x-label: control"),
        ((KEY,), dict(file_name="a\x00b"), "x-file-name: control"),
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


@pytest.mark.parametrize(
    "args,match",
    [
        (("http://h", "split"), "category: expected one of training, testing, anomaly"),
        (("http://h", "train"), "category"),
        (("http://h", "training", "blob"), "kind"),
        (("ftp://h", "training"), "base_url"),
    ],
)
def test_bad_endpoint(args, match):
    with pytest.raises(ValueError, match=match):
        ingest.endpoint(*args)
