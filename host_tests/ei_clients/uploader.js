// Upload files with the upload() of Edge Impulse's uploader (npm edge-impulse-linux,
// build/cli-common/make-image.js: what `edge-impulse-uploader` calls for each file), unmodified. Used by
// host_tests/test_ei_clients.py; `make test` installs the package into .venv/node.
//
//   node uploader.js <edge-impulse-linux dir> < job.json
//
// job.json: {"server": "http://127.0.0.1:PORT", "apiKey": ...,
//            "uploads": [{"path", "filename", "category", "label": {"type": "label", "label": ...} |
//                         {"type": "infer"} | {"type": "multi-label", "labels": [...]} |
//                         {"type": "keyvalue-labels", "labels": {...}}, "boundingBoxes": [...] | null,
//                         "metadata": {...} | null}]}
// Prints a JSON array, one {"ok": true} or {"ok": false, "error": ...} per upload.
//
// upload() takes its ingestion URL from config.endpoints.internal.ingestion and, for .csv and .txt only,
// asks the Studio API whether the project has a CSV wizard set up (config.api.projects.getProjectInfo):
// this script gives it the local server's URL and a project without one.
'use strict';

const fs = require('fs');
const path = require('path');

async function main() {
    const pkg = process.argv[2];
    if (!pkg) {
        throw new Error('usage: node uploader.js <edge-impulse-linux dir> < job.json');
    }
    const { upload } = require(path.join(path.resolve(pkg), 'build', 'cli-common', 'make-image.js'));

    const chunks = [];
    for await (const chunk of process.stdin) {
        chunks.push(chunk);
    }
    const job = JSON.parse(Buffer.concat(chunks).toString('utf-8'));
    const config = {
        endpoints: { internal: { ingestion: job.server } },
        api: { projects: { getProjectInfo: async () => ({ csvImportConfig: undefined, project: {} }) } },
    };

    const results = [];
    for (const u of job.uploads) {
        try {
            await upload({
                filename: u.filename,
                buffer: await fs.promises.readFile(u.path),
                apiKey: job.apiKey,
                allowDuplicates: false,
                category: u.category,
                config: config,
                label: u.label,
                boundingBoxes: u.boundingBoxes || undefined,
                metadata: u.metadata || undefined,
                addDateId: false,
                projectId: 1,
            });
            results.push({ ok: true });
        }
        catch (ex) {
            results.push({ ok: false, error: ex.message || String(ex) });
        }
    }
    process.stdout.write(JSON.stringify(results));
}

main().catch((ex) => {
    process.stderr.write(String(ex && ex.stack || ex) + '\n');
    process.exit(1);
});
