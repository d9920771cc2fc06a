// A fake device on Edge Impulse's own remote management client (RemoteMgmt of npm edge-impulse-linux,
// build/cli-common/remote-mgmt-service.js, unmodified), for host_tests/test_remote_ei_client.py.
//
//   node remote.js <edge-impulse-linux dir> < job.json
//
// job.json: {"ws": "ws://127.0.0.1:PORT", "ingestion": "http://127.0.0.1:PORT", "apiKey", "deviceId",
//            "deviceType", "sensors": [{name, maxSampleLengthS, frequencies}], "samples": N}
// The client opens its socket with the ws package the Linux CLI uses (url => new WebSocket(url)); its
// Studio calls (createDevice, getDevice, getProjectInfo) are stubs. The device records a sine wave for
// each sample request and posts it to job.ingestion + the request's path, signed with its hmacKey, as
// the Linux device does. Prints one JSON line per event: {"event": "connected"}, {"event": "request",
// "sample": {...}}, {"event": "uploaded", "status": N}; exits after job.samples uploads.
'use strict';

const path = require('path');
const crypto = require('crypto');

async function main() {
    const pkg = path.resolve(process.argv[2] || '');
    const { RemoteMgmt } = require(path.join(pkg, 'build', 'cli-common', 'remote-mgmt-service.js'));
    const { EventEmitter } = require(path.join(pkg, 'build', 'shared', 'daemon', 'events'));
    const WebSocket = require(require.resolve('ws', { paths: [pkg] }));

    const chunks = [];
    for await (const chunk of process.stdin) {
        chunks.push(chunk);
    }
    const job = JSON.parse(Buffer.concat(chunks).toString('utf-8'));
    const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
    let uploads = 0;

    class FakeDevice extends EventEmitter {
        async beforeConnect() { }
        connected() { return true; }
        async getDeviceId() { return job.deviceId; }
        async getDeviceType() { return job.deviceType; }
        getConnectionType() { return 'ip'; }
        getSensors() { return job.sensors; }
        supportsSnapshotStreaming() { return false; }
        supportsSnapshotStreamingWhileCapturing() { return false; }
        async sampleRequest(s, ee) {
            say({ event: 'request', sample: s });
            ee.emit('started');
            const rows = Math.round(s.length / s.interval);
            const values = [];
            for (let i = 0; i < rows; i++) {
                values.push([Math.sin(i / 5) * 9.81, Math.cos(i / 5), 9.81]);
                if (i === Math.floor(rows / 2)) {
                    ee.emit('reading', 50);
                }
            }
            const msg = {
                protected: { ver: 'v1', alg: 'HS256', iat: Math.floor(Date.now() / 1000) },
                signature: '0'.repeat(64),
                payload: {
                    device_name: job.deviceId,
                    device_type: job.deviceType,
                    interval_ms: s.interval,
                    sensors: [{ name: 'accX', units: 'm/s2' }, { name: 'accY', units: 'm/s2' },
                        { name: 'accZ', units: 'm/s2' }],
                    values: values,
                },
            };
            // signed as Edge Impulse's tools sign: over the JSON with the zero signature in it
            msg.signature = crypto.createHmac('sha256', s.hmacKey).update(JSON.stringify(msg)).digest('hex');
            ee.emit('uploading');
            const res = await fetch(job.ingestion + s.path, {
                method: 'POST',
                headers: {
                    'Content-Type': 'application/json',
                    'x-api-key': job.apiKey,
                    'x-file-name': s.label + '.json',
                },
                body: JSON.stringify(msg),
            });
            const text = await res.text();
            say({ event: 'uploaded', status: res.status, body: text });
            if (!res.ok) {
                throw new Error('upload failed: ' + res.status + ' ' + text);
            }
            uploads += 1;
            if (uploads >= job.samples) {
                setTimeout(() => process.exit(0), 300); // after sampleFinished went out
            }
        }
    }

    const eiConfig = {
        command: 'uingest-test',
        endpoints: { internal: { ws: job.ws, api: job.ingestion + '/v1', ingestion: job.ingestion } },
        api: {
            devices: {
                createDevice: async () => ({ success: true }),
                getDevice: async () => ({ success: true, device: { name: job.deviceId } }),
                renameDevice: async () => ({ success: true }),
            },
            projects: { getProjectInfo: async () => ({ success: true, project: { name: 'local', whitelabelId: null } }) },
        },
    };
    const remote = new RemoteMgmt(1, { apiKey: job.apiKey, hmacKey: '' }, eiConfig, new FakeDevice(), undefined,
        (url) => new WebSocket(url), async (name) => name);
    remote.on('authenticationFailed', () => {
        say({ event: 'refused' });
        process.exit(3);
    });
    await remote.connect();
    const waitConnected = setInterval(() => {
        if (remote.isConnected) {
            clearInterval(waitConnected);
            say({ event: 'connected' });
        }
    }, 20);
}

main().catch((e) => {
    process.stderr.write((e && e.stack) || String(e));
    process.stderr.write('\n');
    process.exit(1);
});
