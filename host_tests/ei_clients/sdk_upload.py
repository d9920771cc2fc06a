"""Upload directories with Edge Impulse's Python SDK (PyPI `edgeimpulse`), as a user would.

Used by host_tests/test_ei_clients.py, in its own process so that the SDK reads its settings from the
environment at import, like in real use: EI_INGESTION_ENDPOINT (the ingestion server's base URL) and
EI_API_KEY. Reads a JSON list of calls on stdin:

    [{"directory": "...", "category": null, "label": null, "infer_from_filename": false}, ...]

or, for upload_samples, {"samples": [{"path": ..., "filename": ..., "category": ..., "label": ...,
"structured_labels": [...], "bounding_boxes": [...]}]} (multi-label samples and bounding boxes).

or {"function": NAME, "kwargs": {...}} for the other upload functions (upload_numpy: "data" a nested list
made a numpy array, "sensors" [[name, units]...]; the pandas ones: "df" {column: [values]} made a DataFrame;
upload_plain_directory, upload_exported_dataset: as given).

and prints, for each call, what the SDK reported: {"successes": [...], "fails": [...]}, each entry with
the sample's filename, category and label as the SDK sent them and the server's sampleId or error.
"""

import json
import sys

import edgeimpulse
from edgeimpulse import data


def describe(response) -> dict:
    s = response.sample
    return {
        "filename": s.filename,
        "category": s.category,
        "label": s.label,
        "success": response.success,
        "sample_id": response.sample_id,
        "error": response.error,
    }


def call_function(name: str, kwargs: dict):
    if name == "upload_numpy":
        import numpy
        from edgeimpulse.data.sample_type import Sensor

        kwargs["data"] = numpy.array(kwargs["data"])
        kwargs["sensors"] = [Sensor(n, u) for n, u in kwargs["sensors"]]
    elif name.startswith("upload_pandas"):
        import pandas

        kwargs["df"] = pandas.DataFrame(kwargs["df"])
    elif name == "upload_acquisition":  # upload_samples with a DataAcquisition, as the SDK's docs show it
        from edgeimpulse.data.sample_type import DataAcquisition, Payload, Protected, Sensor

        acq = DataAcquisition(
            protected=Protected(),
            payload=Payload(
                device_type=kwargs["device_type"],
                sensors=[Sensor(n, u) for n, u in kwargs["sensors"]],
                values=kwargs["values"],
                interval_ms=kwargs["interval_ms"],
            ),
        )
        sample = data.Sample(filename=kwargs["filename"], data=acq, label=kwargs["label"], category="training")
        return data.upload_samples([sample])
    return getattr(data, name)(**kwargs)


def main() -> int:
    calls = json.load(sys.stdin)
    out = {"version": edgeimpulse.__version__, "endpoint": edgeimpulse.INGESTION_ENDPOINT, "calls": []}
    for call in calls:
        if "function" in call:
            res = call_function(call["function"], dict(call["kwargs"]))
        elif "samples" in call:
            samples = []
            for s in call["samples"]:
                with open(s["path"], "rb") as f:
                    raw = f.read()
                samples.append(
                    data.Sample(
                        filename=s["filename"],
                        data=raw,
                        category=s.get("category"),
                        label=s.get("label"),
                        structured_labels=s.get("structured_labels"),
                        bounding_boxes=s.get("bounding_boxes"),
                    )
                )
            res = data.upload_samples(samples)
        else:
            res = data.upload_directory(
                directory=call["directory"],
                category=call.get("category"),
                label=call.get("label"),
                metadata=call.get("metadata"),
                transform=data.infer_from_filename if call.get("infer_from_filename") else None,
            )
        out["calls"].append(
            {
                "successes": [describe(r) for r in res.successes],
                "fails": [describe(r) for r in res.fails],
            }
        )
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
