/**
 * The Node.js version gate. It imports nothing, and the entry runs it before loading any
 * other module, so an unsupported Node gets one coded line instead of whatever breaks first.
 */

/** The oldest Node.js ftvm runs on; `engines` in package.json starts here (docs/node-version.md). */
export const MIN_NODE = '20.15.0';

/** Why ftvm cannot run on Node.js `version` (like 'v18.20.8'), or undefined when it can. */
export function nodeRefusal(version: string): string | undefined {
  const have = version.replace(/^v/, '').split('.').map(Number);
  const need = MIN_NODE.split('.').map(Number);
  for (let i = 0; i < need.length; i++) {
    const h = have[i] || 0;
    if (h > need[i]) return undefined;
    if (h < need[i]) {
      return 'ftvm needs Node.js ' + MIN_NODE + ' or later and this is Node.js ' + version + ' (' + process.execPath + '). ' +
        'Run it with Node.js 20.15+, 22 or 24 (24 is the LTS the container image ships); see docs/node-version.md';
    }
  }
  return undefined;
}
