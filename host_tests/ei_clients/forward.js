// Send windows to an ingestion server with Edge Impulse's own DataForwarder (npm edge-impulse-linux),
// unmodified. Used by host_tests/test_ei_clients.py; `make test` installs the package into .venv/node.
//
//   node forward.js <edge-impulse-linux dir> < job.json
//
// job.json: {"server": "http://127.0.0.1:PORT", "apiKey": ..., "hmacKey": ..., "deviceId": ...,
//            "deviceType": ..., "sensors": [{"name", "units"}], "intervalMs": ...,
//            "uploads": [{"category", "label", "filename", "values": [[...], ...]}]}
// Prints a JSON array, one {"ok": true, "body": ...} or {"ok": false, "error": ...} per upload.
//
// The DataForwarder has no option for an ingestion URL: with EI_HOST=localhost (or host: 'localhost') it
// posts to the hard-coded http://localhost:4810, Edge Impulse's local development endpoint. So that the
// test can use a free port, the connections it opens to localhost:4810 are routed to job.server through
// undici's global dispatcher; the URL, headers and body are the client's own.
'use strict';

const path = require('path');

async function main() {
    const pkg = process.argv[2];
    if (!pkg) {
        throw new Error('usage: node forward.js <edge-impulse-linux dir> < job.json');
    }
    const library = path.join(path.resolve(pkg), 'build', 'library');
    const { DataForwarder } = require(path.join(library, 'data-forwarder.js'));
    // the very undici that data-forwarder.js loads
    const undici = require(require.resolve('undici', { paths: [library] }));

    const chunks = [];
    for await (const chunk of process.stdin) {
        chunks.push(chunk);
    }
    const job = JSON.parse(Buffer.concat(chunks).toString('utf-8'));

    const target = new URL(job.server);
    const connector = undici.buildConnector({});
    undici.setGlobalDispatcher(new undici.Agent({
        connect: (opts, callback) => {
            if (opts.hostname !== 'localhost' || String(opts.port) !== '4810') {
                callback(new Error('unexpected connection to ' + opts.hostname + ':' + opts.port), null);
                return;
            }
            connector({ ...opts, hostname: target.hostname, port: Number(target.port) }, callback);
        },
    }));

    const results = [];
    for (const up of job.uploads) {
        // a fresh forwarder per window, as the Linux SDK's data forwarder does
        const forwarder = new DataForwarder({
            deviceId: job.deviceId,
            deviceType: job.deviceType,
            sensors: job.sensors,
            intervalMs: job.intervalMs,
            apiKey: job.apiKey,
            hmacKey: job.hmacKey,
            // no host: the DataForwarder reads EI_HOST (the test sets EI_HOST=localhost)
        });
        for (const row of up.values) {
            forwarder.addData(row);
        }
        try {
            const body = await forwarder.upload({ filename: up.filename, label: up.label, category: up.category });
            results.push({ ok: true, body: body });
        } catch (e) {
            results.push({ ok: false, error: e instanceof Error ? e.message : String(e) });
        }
    }
    process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch((e) => {
    process.stderr.write((e && e.stack) || String(e));
    process.stderr.write('\n');
    process.exit(1);
});
