"""What the host tools share: the firmware's ingestion constants, the file types, one-line error text, fsync
of a path, and the key options with their environment variables."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import mpshim
from .bundle import FIRMWARE


def firmware_module(name: str):
    """uingest.<name> from the firmware folder, imported into this CPython process: for the firmware modules
    that need nothing but CPython's standard library and the shim (ingest, config: its URL check imports
    uingest.http, which imports `micropython`), so that the host applies the firmware's own rules instead of a
    copy."""
    mpshim.install()
    if FIRMWARE not in sys.path:
        sys.path.append(FIRMWARE)
    return importlib.import_module("uingest." + name)


ingest = firmware_module("ingest")

DEFAULT_URL = ingest.DEFAULT_URL  # Edge Impulse's ingestion service
DATA_CATEGORIES = ingest.DATA_CATEGORIES  # what /api/<category>/data takes: training, testing, anomaly, split
FILE_CATEGORIES = ingest.FILE_CATEGORIES  # the same for /files (split: the service picks training or testing)

# extension -> kind of file; cbor and json are data acquisition messages, the others are kept as they are
# (an image's kind is then taken from its bytes: collector_rules.check_file). .txt is CSV, as Edge Impulse
# reads it; video is kept as a file sample.
FILE_TYPES = {
    ".cbor": "cbor",
    ".json": "json",
    ".wav": "wav",
    ".csv": "csv",
    ".txt": "csv",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".png": "png",
    ".mp4": "mp4",
    ".avi": "avi",
}
MEDIA_TYPES = {  # kind of file -> its Content-Type
    **ingest.CONTENT_TYPES,  # the messages: cbor, json
    "wav": "audio/wav",
    "csv": "text/csv",
    "jpg": "image/jpeg",
    "png": "image/png",
    "mp4": "video/mp4",
    "avi": "video/avi",  # what Edge Impulse's uploader sends (its EXTENSION_MAPPING)
}


def one_line(text, limit: int | None = None, empty: str = "error", squeeze: bool = True) -> str:
    """text (any object: str() of it) on one line; empty when nothing is left; cut to limit characters (ending
    in '...') when given. squeeze: runs of whitespace made one space (another program's text); False: only the
    line breaks become spaces (a reason quoting what a client sent keeps its spacing, as serve writes them)."""
    text = (" ".join(str(text).split()) if squeeze else " ".join(str(text).splitlines())) or empty
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def fsync_path(path: str) -> None:
    """fsync a file or a folder by its path; for a folder, that makes the names created, renamed or removed
    in it durable. Raises OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a mistake on the command line is one line (argparse prints the usage first)."""

    def error(self, message):
        self.exit(2, "%s: %s (%s --help shows every option)\n" % (self.prog, message, self.prog))


def number_option(kind, least, strictly: bool = False):
    """An argparse type: a kind (int: a whole number, or float) of at least least (more than it, strictly): a
    size of 0 would fail minutes into a run, or say nothing."""
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected %s, got %r" % (noun, text))
        if v < least or (strictly and v == least):
            raise argparse.ArgumentTypeError(
                "expected %s %s %g, got %s" % (noun, "more than" if strictly else "of at least", least, text)
            )
        return v

    return parse


# Where a key comes from, first given wins: the option, then uingest's own variable, then Edge Impulse's (what
# its CLI and SDKs read). UINGEST_* before EI_*: EI_* is often set for a real Edge Impulse project while
# UINGEST_* names the key meant for this tool (e.g. ei_demo for a local `uingest serve`).
API_KEY_VARIABLES = ("UINGEST_API_KEY", "EI_API_KEY")
HMAC_KEY_VARIABLES = ("UINGEST_HMAC_KEY", "EI_HMAC_KEY")
KEY_PRECEDENCE = "the option wins over UINGEST_*, which wins over EI_* (Edge Impulse's tools read those)"


def add_key_options(parser, api_key: str | None = None, hmac_key: str | None = None):
    """--api-key and --hmac-key, each with what it does (None: the tool has no such option); the help names
    the environment variables, which resolve_keys reads (keys on a command line end up in shell histories and
    process lists), and their precedence."""
    if api_key is not None:
        parser.add_argument(
            "--api-key",
            help="%s; prefer the %s environment variable (%s)"
            % (api_key, " or ".join(API_KEY_VARIABLES), KEY_PRECEDENCE),
        )
    if hmac_key is not None:
        parser.add_argument(
            "--hmac-key", help="%s; prefer the %s environment variable" % (hmac_key, " or ".join(HMAC_KEY_VARIABLES))
        )


def missing_api_key() -> str:
    """What to do when resolve_keys found no API key (after the tool's name)."""
    return "no API key: pass --api-key or set %s" % " or ".join(API_KEY_VARIABLES)


def resolve_keys(args) -> tuple[str | None, str | None]:
    """(API key, HMAC key) from the options add_key_options added, else from the environment in the order of
    API_KEY_VARIABLES / HMAC_KEY_VARIABLES; None when none gives one (an empty value counts as none)."""

    def resolve(option, variables):
        if not hasattr(args, option):
            return None
        return getattr(args, option) or next((os.environ[v] for v in variables if os.environ.get(v)), None)

    return resolve("api_key", API_KEY_VARIABLES), resolve("hmac_key", HMAC_KEY_VARIABLES)
