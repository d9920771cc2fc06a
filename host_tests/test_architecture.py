"""The rule of what may import what (ARCHITECTURE.md), read from the sources with `ast`.

A module may import only modules of its own layer or of the layers below it; the firmware never imports the
host side; nothing shipped imports the tests. A change that crosses a layer fails here, naming the import.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
TOOLS = os.path.join(ROOT, "tools")

# The firmware, bottom up. A module's name is its dotted name under firmware/.
FIRMWARE_LAYERS = [
    # 0: pure building blocks: encoders, the hash, the window, the sampler, the service's rules
    [
        "uingest._kernels",
        "uingest._json_kernel",
        "uingest.cbor",
        "uingest.jsonw",
        "uingest.hmac",
        "uingest.window",
        "uingest.sampler",
        "uingest.ingest",
        "uingest.filelabel",
    ],
    # 1: a window becomes a message; windows on flash; the sensors that fill windows
    ["uingest.message", "uingest.filewindow", "uingest.sensors.*"],
    # 2: moving bytes: the HTTP client and its TLS, the queue on flash
    ["uingest.http", "uingest.tls", "uingest.tlsip", "uingest.store"],
    # 3: one window posted
    ["uingest.upload"],
    # 4: the runtime: config check, Wi-Fi, the WebSocket (Wi-Fi's backoff), recording a window to flash, the app,
    # and remote management on the WebSocket (the app loads it only when asked)
    [
        "uingest.config",
        "uingest.wifi",
        "uingest.ws",
        "uingest.wscold",
        "uingest.flashrecorder",
        "uingest.remote",
        "uingest.remotecbor",
        "uingest.remotecold",
        "uingest.remotereq",
        "uingest.app",
    ],
    # 5: the entry point a board runs
    ["main"],
]


# The host package, bottom up (names under uingest_tools.). The commands of the top layers use the layers
# below; a layer never reaches up (the data folder knows nothing of the dashboard, which subscribes to it).
HOST_LAYERS = [
    # 0: no first-party imports: finding the MicroPython tools, progress lines, independent message checks,
    # WAV headers and samples, loopback fakes, the CPython shim, the collector's connection deadlines
    [
        "uingest_tools.mpytools",
        "uingest_tools.progress",
        "uingest_tools.acquisition",
        "uingest_tools.large_messages",
        "uingest_tools.wavfile",
        "uingest_tools.loopback",
        "uingest_tools.mpshim",
        "uingest_tools.mpshim.*",
        "uingest_tools.connections",
        "uingest_tools",
    ],
    # 1: building the firmware; what the tools share (the firmware's rules imported on the host)
    ["uingest_tools.bundle", "uingest_tools.common"],
    # 2-5: the collector, from its pure rules up
    ["uingest_tools.collector_rules"],
    ["uingest_tools.datafolder"],
    ["uingest_tools.ingestion", "uingest_tools.remote_management"],
    ["uingest_tools.dashboard"],
    # 6: the commands
    [
        "uingest_tools.serve",
        "uingest_tools.relay",
        "uingest_tools.inspect_samples",
        "uingest_tools.simulate",
        "uingest_tools.deploy",
        "uingest_tools.ca",
        "uingest_tools.cli",
    ],
    # 7: programs that drive other commands: the demo (serve + simulate), the bench
    ["uingest_tools.demo", "uingest_tools.bench", "uingest_tools.bench_programs.*"],
]


def _layer_of(name, layers):
    for i, layer in enumerate(layers):
        for pattern in layer:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return i
    return None


def _module_name(path, base):
    rel = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path, name):
    """(imported module, line) for every import in the file, relative ones resolved."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from . import http` imports the module uingest.http
            out += [(mod + "." + a.name if not node.module else mod, node.lineno) for a in node.names]
    return out


def _py_files(base, sub):
    top = os.path.join(base, sub)
    if os.path.isfile(top + ".py"):
        yield top + ".py"
    for dirpath, _, files in os.walk(top):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(dirpath, f)


def _firmware_modules():
    for path in list(_py_files(FIRMWARE, "uingest")) + [os.path.join(FIRMWARE, "main.py")]:
        yield path, _module_name(path, FIRMWARE)


def _first_party(mod):
    return mod == "uingest" or mod.startswith("uingest.") or mod == "main"


def _host_modules():
    for path in _py_files(TOOLS, "uingest_tools"):
        if os.sep + "bench_programs" + os.sep in path:
            continue  # MicroPython programs, run on the unix port: they import the firmware only
        yield path, _module_name(path, TOOLS)


TREES = {
    "firmware": (_firmware_modules, FIRMWARE_LAYERS, _first_party, ("uingest", "uingest.sensors")),
    "host": (_host_modules, HOST_LAYERS, lambda mod: mod.split(".")[0] == "uingest_tools", ("uingest_tools",)),
}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_every_module_has_a_layer(tree):
    modules, layers, _, packages = TREES[tree]
    missing = [name for _, name in modules() if name not in packages and _layer_of(name, layers) is None]
    assert not missing, "give these modules a layer in ARCHITECTURE.md and test_architecture.py: %s" % missing


@pytest.mark.parametrize("tree", sorted(TREES))
def test_imports_only_its_own_layer_or_below(tree):
    modules, layers, first_party, packages = TREES[tree]
    crossings = []
    for path, name in modules():
        own = _layer_of(name, layers)
        if own is None:
            continue
        for mod, line in _imports(path, name):
            if not first_party(mod) or mod in packages:
                continue
            theirs = _layer_of(mod, layers)
            if theirs is None:
                # `from .window import new_array` resolves to the module; a name imported from a
                # package resolves to package.name: take the package
                theirs = _layer_of(mod.rpartition(".")[0], layers)
            if theirs is not None and theirs > own:
                crossings.append("%s:%d imports %s (layer %d above %d)" % (name, line, mod, theirs, own))
    assert not crossings, "\n".join(crossings)


@pytest.mark.parametrize("module", ["collector_rules", "datafolder"])
def test_the_collector_rules_and_data_folder_know_no_web_framework(module):
    path = os.path.join(TOOLS, "uingest_tools", module + ".py")
    web = [
        m for m, _ in _imports(path, "uingest_tools." + module) if m.split(".")[0] in ("starlette", "uvicorn", "anyio")
    ]
    assert not web, web


@pytest.mark.parametrize("forbidden", ["uingest_tools", "host_tests", "starlette", "cbor2", "requests"])
def test_firmware_never_imports_the_host_side(forbidden):
    hits = [
        "%s:%d imports %s" % (name, line, mod)
        for path, name in _firmware_modules()
        for mod, line in _imports(path, name)
        if mod == forbidden or mod.startswith(forbidden + ".")
    ]
    assert not hits, "\n".join(hits)


def test_shipped_code_never_imports_the_tests():
    test_modules = {f[:-3] for f in os.listdir(os.path.join(ROOT, "host_tests")) if f.endswith(".py")}
    test_modules |= {"host_tests", "conftest"}
    hits = []
    for base, sub in ((TOOLS, "uingest_tools"), (FIRMWARE, "uingest")):
        for path in _py_files(base, sub):
            name = _module_name(path, base)
            for mod, line in _imports(path, name):
                if mod.split(".")[0] in test_modules:
                    hits.append("%s:%d imports %s" % (name, line, mod))
            with open(path, encoding="utf-8") as f:
                if '"host_tests"' in f.read():
                    hits.append("%s reads files from host_tests/" % name)
    assert not hits, "\n".join(hits)


def test_the_rule_catches_a_crossing(tmp_path):
    # the checker itself: an http module importing the app is found
    pkg = tmp_path / "uingest"
    pkg.mkdir()
    (pkg / "http.py").write_text("from . import app\nfrom .window import Window\n")
    found = _imports(str(pkg / "http.py"), "uingest.http")
    assert ("uingest.app", 1) in found and ("uingest.window", 2) in found
    assert _layer_of("uingest.app", FIRMWARE_LAYERS) > _layer_of("uingest.http", FIRMWARE_LAYERS)


def _firmware_graph():
    names = {name for _, name in _firmware_modules()}
    graph = {}
    for path, name in _firmware_modules():
        deps = set()
        for mod, _ in _imports(path, name):
            if mod not in names:
                mod = mod.rpartition(".")[0]
            if mod in names and mod != name and mod not in ("uingest", "uingest.sensors"):
                deps.add(mod)
        graph[name] = deps
    return graph


def _cycles(graph):
    """Every import circle, as a list of module names (depth-first search, each circle once)."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_circle_in_the_firmware():
    circles = _cycles(_firmware_graph())
    assert not circles, "import circles (a lazy import inside a function counts too): %s" % [
        " -> ".join(c) for c in circles
    ]


def test_the_circle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
