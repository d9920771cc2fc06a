"""The dashboard's Record flow in a real headless Chromium (Debian's, driven by Playwright): a fake device
on the remote management port appears in the remote devices table; the Record form starts a recording on
it through the Studio-compatible route; the page shows the device's progress live; the new sample appears
in the sample list and is plotted when it arrives."""

from remote_device import DeviceThread
from test_dashboard import PIXELS_JS, dashboard_page, wait_until

from uingest_tools import serve
from uingest_tools.datafolder import read_index

API_KEY = "ei_record_key_2f9b"
DEVICE = "dev-remote-01"


def test_record_from_the_dashboard(tmp_path):
    app = serve.create_app(str(tmp_path), api_key=API_KEY, remote_port=0)
    with serve.ServerThread(app) as srv:
        port = app.state.remote_management.port
        device = DeviceThread("ws://127.0.0.1:%d" % port, API_KEY, srv.port, DEVICE, steps=0.4)
        device.start()
        assert device.ready.wait(10) and device.error is None, device.error
        with dashboard_page(srv.url + "/?key=" + API_KEY, viewport={"width": 1400, "height": 1200}) as (page, errors):
            row = '#remotedevices tr[data-device-id="%s"]' % DEVICE
            page.wait_for_selector(row, timeout=10000)
            cells = page.locator(row + " td").all_inner_texts()
            assert cells[:3] == [DEVICE, "UINGEST_FAKE", "Accelerometer, Microphone"], cells
            assert cells[3] and cells[4] == "idle", cells
            assert "ws://127.0.0.1:%d" % port in page.text_content("#remotehint")
            assert page.input_value("#recdevice") == DEVICE
            assert page.input_value("#recsensor") == "Accelerometer"
            assert page.input_value("#recfrequency") == "62.5"  # the sensor's first frequency

            # a refused request says why
            page.fill("#reclabel", "a/b")
            page.click("#recstart")
            wait_until(page, "document.getElementById('recordstatus').textContent.startsWith('refused')")
            assert "label" in page.text_content("#recordstatus")

            page.fill("#reclabel", "wave")
            page.fill("#reclength", "1000")
            page.fill("#recfrequency", "100")
            page.select_option("#reccategory", "testing")
            page.click("#recstart")
            wait_until(page, "document.querySelector('%s td[data-state]').dataset.state === 'sampling'" % row)
            wait_until(page, "document.querySelector('%s .progress') !== null" % row)
            wait_until(page, "document.querySelector('%s td[data-state]').dataset.state === 'uploading'" % row)
            wait_until(page, "window.uingestRemote.last !== null", timeout=15)
            status = page.text_content("#recordstatus")
            assert "finished" in status, status
            stages = page.evaluate("window.uingestRemote.last.stages")
            assert stages[0] in ("requested", "accepted") and stages[-1] == "finished", stages
            assert "reading" in stages and "uploading" in stages, stages
            wait_until(page, "document.querySelector('%s td[data-state]').dataset.state === 'idle'" % row)

            request = device.requests.get(timeout=5)["sample"]
            assert (request["label"], request["length"], request["interval"], request["path"]) == (
                "wave", 1000, 10, "/api/testing/data")  # fmt: skip
            records, _ = read_index(str(tmp_path))
            assert [(r["label"], r["category"], r["rows"]) for r in records] == [("wave", "testing", 100)]
            sample_id = records[0]["sample_id"]
            # the sample is listed and plotted
            wait_until(page, "window.uingestDashboard.plotted === %d" % sample_id)
            wait_until(page, "document.querySelector('#samples tr[data-sample-id=\"%d\"]') !== null" % sample_id)
            assert "wave" in page.text_content("#plottitle")
            counts = page.evaluate(PIXELS_JS)
            assert all(n > 100 for n in counts), "axis lines not drawn: %r pixels per axis colour" % counts
            assert "sample %d" % sample_id in status
            page.screenshot(path=str(tmp_path / "record.png"), full_page=True)
            assert not errors, errors
        device.device.close()
