"""The one label rule fed to its three users in one test (issue 12 item 6): the config check, the request
headers the board sends, and `uingest serve` over HTTP. Each label of the one table gets the same verdict from
all three, and serve stores what the other two would send."""

import http.client
import urllib.parse

import pytest
from test_config import broken
from test_serve_connections import API_KEY, BODY

from helpers import read_index
from label_cases import LABEL_CASES, ids
from uingest import config, ingest
from uingest_tools import serve


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("labels"))
    srv = serve.ServerThread(serve.create_app(data, api_key=API_KEY)).start()
    srv.data_dir = data
    yield srv
    srv.stop()


def encode_uri_component(text):
    """As Edge Impulse's JavaScript clients send a header value (encodeURIComponent)."""
    return urllib.parse.quote(text, safe="-_.!~*'()")


@pytest.mark.parametrize("label,stripped,reason", LABEL_CASES, ids=ids())
def test_the_config_the_headers_and_serve_give_one_verdict(server, label, stripped, reason):
    try:
        config.loads(broken(labels=[label]))
        by_config = True
    except config.ConfigError:
        by_config = False
    try:
        sent = ingest.headers(API_KEY, label=label, file_name="w.cbor")["x-label"]
        by_headers = True
    except ValueError:
        sent, by_headers = encode_uri_component(label), False  # what a client that does not check would send
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        c.request(
            "POST",
            "/api/training/data",
            BODY,
            {"Content-Type": "application/cbor", "x-api-key": API_KEY, "x-label": sent, "x-file-name": "w.cbor"},
        )
        reply = c.getresponse()
        text = reply.read().decode()
    finally:
        c.close()
    if label == "":  # an empty x-label is no label, as the service reads it: the file name's is taken
        assert (by_config, by_headers, reply.status) == (False, False, 200), (reply.status, text)
        assert read_index(server.data_dir)[-1]["label"] == "w"
        return
    by_serve = reply.status == 200
    assert (by_config, by_headers, by_serve) == ((stripped is not None),) * 3, (label, reply.status, text)
    if stripped is not None:  # serve stored the label the board's config and headers mean
        assert read_index(server.data_dir)[-1]["label"] == stripped
    elif reason is not None:  # the service's rule: its reason, word for word
        assert reason in text, text
