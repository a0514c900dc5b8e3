#!/usr/bin/env -S node --min-semi-space-size=16
// The `ftvm` bin. It is committed (not built) so that npm links it on the first `npm install`,
// before `prepare` has compiled dist/: npm skips a bin whose file does not exist yet.
// dist/main.js checks the Node.js version before it loads any other module.
import '../dist/main.js';
