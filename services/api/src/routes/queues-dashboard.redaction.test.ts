import { appRoutes } from '@bull-board/api/dist/routes.js';
import { describe, expect, it } from 'vitest';
import {
  BOARD_ROUTES,
  boardRoute,
  redactJob,
  redactName,
  redactPayload,
  redactReason,
  WITHHELD_NAME,
} from './queues-dashboard.redaction.ts';

const ID = '6f1c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f';

describe('queue dashboard redaction', () => {
  it('classifies every JSON route of the installed bull-board, and no route it does not have', () => {
    // A bull-board upgrade that adds a route fails here: decide what it may show before serving it.
    const installed = appRoutes.api.flatMap((r) =>
      [r.route].flat().flatMap((path) => [r.method].flat().map((m) => `${m.toUpperCase()} ${path}`)),
    );
    expect(installed.filter((k) => BOARD_ROUTES[k] === undefined)).toEqual([]);
    expect(Object.keys(BOARD_ROUTES).filter((k) => !installed.includes(k))).toEqual([]);
    expect(boardRoute('HEAD', '/api/queues')?.kind).toBe('read');
    expect(boardRoute('GET', '/api/something-new')).toBeUndefined();
  });

  it.each([
    [
      'domain_not_allowed: web.secret.example is not allowed by profile "prod"',
      'domain_not_allowed (details withheld)',
    ],
    ['validation_failed: /justification: must be at most 4000 characters', 'validation_failed (details withheld)'],
    [
      'invalid renewal-requests payload: /web.secret.example: unexpected property',
      'invalid renewal-requests payload (details withheld)',
    ],
    ['2 of 3 deliveries failed: alice@secret.example: 550 no such user', '2 of 3 deliveries failed (details withheld)'],
    ['no issuer connector "secret-ca" is configured', 'no issuer connector (details withheld)'],
    [`principal ${ID} does not exist or is disabled`, `principal ${ID} does not exist or is disabled`],
    [`job ${ID} does not exist`, `job ${ID} does not exist`],
    ['job stalled more than allowable limit', 'job stalled more than allowable limit'],
  ])('shows the class of a failure, never its quoted text: %s', (reason, shown) => {
    expect(redactReason(reason)).toBe(shown);
  });

  it.each([
    'duplicate key value violates unique constraint "certificates_cn_key": Key (common_name)=(web.secret.example)',
    'please renew the payroll frontend',
    `principal ${ID} does not exist or is disabled, asked by web.secret.example`,
    'not_a_code: web.secret.example',
  ])('withholds a reason it does not know: %s', (reason) => {
    const shown = redactReason(reason) ?? '';
    expect(shown).toMatch(/withheld/);
    expect(shown).not.toContain('secret');
    expect(shown).not.toContain('payroll');
  });

  it('keeps ids, numbers and Countersign words of a payload, and drops text, nesting and odd field names', () => {
    expect(
      redactPayload({
        job_id: ID,
        approval_ids: Array.from({ length: 25 }, () => ID),
        kind: 'approval_decided',
        round: 2,
        scheduler: 'expire-approvals-v1',
        common_name: 'web.secret.example',
        csr: '-----BEGIN CERTIFICATE REQUEST-----',
        justification: 'new frontend',
        idempotency_key: 'ticket-42',
        sans: ['web.secret.example'],
        nested: { job_id: ID },
        'web.secret.example': ID,
        jws: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln',
      }),
    ).toEqual({
      job_id: ID,
      approval_ids: Array.from({ length: 20 }, () => ID),
      approval_ids_count: 25,
      kind: 'approval_decided',
      round: 2,
      scheduler: 'expire-approvals-v1',
      _withheld: 8,
    });
    expect(redactPayload('a bare string')).toEqual({ _withheld: 1 });
    expect(redactPayload(null)).toEqual({});
  });

  it("names a job only in Countersign's own words", () => {
    expect(redactName('issuance')).toBe('issuance');
    expect(redactName('expire-approvals')).toBe('expire-approvals');
    expect(redactName('web.secret.example')).toBe(WITHHELD_NAME);
  });

  it('rebuilds a job from the fields the board may show, whatever else bull-board adds', () => {
    const job = redactJob({
      id: 'x1',
      name: 'renew web.secret.example',
      timestamp: 1,
      attempts: 2,
      failedReason: 'domain_not_allowed: web.secret.example',
      stacktrace: ['Error: web.secret.example\n    at handler'],
      opts: { attempts: 5, deduplication: { id: 'web.secret.example' }, parent: { id: 'p', queue: 'q' } },
      deduplicationId: 'web.secret.example',
      data: { csr: 'x' },
      returnValue: { job_id: ID, note: 'web.secret.example' },
      progress: { step: 'web.secret.example' },
      someFutureField: 'web.secret.example',
      isFailed: true,
    });
    expect(JSON.stringify(job)).not.toContain('secret');
    expect(job).toMatchObject({ id: 'x1', attempts: 2, isFailed: true, stacktrace: [], opts: { attempts: 5 } });
    expect(job.returnValue).toEqual({ job_id: ID, _withheld: 1 });
  });
});
