/**
 * Child process for the concurrent-creation test: waits until a shared start
 * time (so sibling processes hit the empty directory together), then loads or
 * creates the CA and prints what it ended up with.
 *
 *   tsx create-ca-child.fixture.ts <dir> <start-epoch-ms>
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { loadOrCreateLocalCa } from './index.ts';

const [dir, startAt] = process.argv.slice(2);
if (dir === undefined || startAt === undefined)
  throw new Error('usage: create-ca-child.fixture.ts <dir> <start-epoch-ms>');
await sleep(Math.max(0, Number(startAt) - Date.now()));
const ca = await loadOrCreateLocalCa({ dir });
process.stdout.write(JSON.stringify({ rootPem: ca.rootPem, chainPems: ca.chainPems }));
