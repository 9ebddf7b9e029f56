/**
 * Local CA issuance rate vs. the raw ECDSA P-256 signing rate it is bounded by.
 *
 *   pnpm exec tsx packages/ca/bench/issue-rate.bench.ts [seconds-per-phase]
 *
 * Single-threaded on purpose: the target is ">= 25% of raw crypto.sign on one
 * core", so both phases run in this process, one after the other, over the
 * same wall-clock window, after a warm-up that lets V8 optimise both paths.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyAndCsr } from '../src/csr-generate.ts';
import { children, readTopLevel, TAG_SEQUENCE } from '../src/der.ts';
import type { IssueRequest } from '../src/index.ts';
import { loadOrCreateLocalCa, parseCsr } from '../src/index.ts';

const seconds = Number(process.argv[2] ?? 3);

function rate(fn: () => void, ms: number): number {
  const start = performance.now();
  let n = 0;
  let now = start;
  while (now - start < ms) {
    // Batches of 100 keep the clock read off the measured cost.
    for (let i = 0; i < 100; i++) fn();
    n += 100;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-bench-'));
  try {
    const ca = await loadOrCreateLocalCa({ dir });
    const { csrPem } = await generateKeyAndCsr({
      commonName: 'www.example.com',
      dnsNames: ['www.example.com', 'api.example.com', 'cdn.example.com'],
    });
    const csr = parseCsr(csrPem);
    const req: IssueRequest = {
      commonName: csr.commonName ?? 'www.example.com',
      dnsNames: csr.dnsNames,
      publicKeySpki: csr.publicKeySpki,
      validityDays: 90,
    };

    // Same key type and a payload the size of a real TBSCertificate.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const leaf = ca.issue(req).leafDer;
    const tbsEl = children(leaf, readTopLevel(leaf, TAG_SEQUENCE))[0];
    const tbsSized = leaf.subarray(tbsEl?.start ?? 0, tbsEl?.end ?? leaf.length);
    const rawSign = () => {
      sign('sha256', tbsSized, privateKey);
    };
    const issue = () => {
      ca.issue(req);
    };

    rate(rawSign, 500);
    rate(issue, 500);
    // Alternate short rounds and take medians, so a noisy neighbour or CPU
    // frequency change affects both figures alike instead of skewing the ratio.
    const rounds = 5;
    const ms = (seconds * 1000) / rounds;
    const raws: number[] = [];
    const issued: number[] = [];
    for (let r = 0; r < rounds; r++) {
      raws.push(rate(rawSign, ms));
      issued.push(rate(issue, ms));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    const raw = median(raws);
    const leaves = median(issued);
    const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
    console.log(`raw crypto.sign ECDSA P-256 : ${fmt(raw)} ops/s`);
    console.log(`local CA leaf issuance      : ${fmt(leaves)} certs/s`);
    console.log(`ratio                       : ${((leaves / raw) * 100).toFixed(1)}% (target >= 25%)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
