#!/usr/bin/env -S node --min-semi-space-size=16
// The `ftvm` bin. It is committed (not built) so that npm links it on the first `npm install`,
// before `prepare` has compiled dist/: npm skips a bin whose file does not exist yet.
import '../dist/main.js';
