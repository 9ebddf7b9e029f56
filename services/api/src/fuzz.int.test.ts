import { tamperCsrSignature } from '@countersign/ca/testing';
import { ERROR_STATUS, type ErrorCode } from '@countersign/domain';
import { csrFor, type SeededOrg, seedOrg } from '@countersign/testing';
import { createEnrollmentKey, createPrincipal } from '@countersign/workflow';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';
import { changedTables, type DbFingerprint, fingerprinter, tableNames } from './test/db-fingerprint.ts';

/**
 * API fuzzing driven by the served OpenAPI document: every documented
 * operation gets requests built from its own schemas, then broken on purpose
 * (missing, extra, wrong-typed and oversized fields, unicode and NUL in
 * names, bodies that are not objects, malformed JSON, wrong content types,
 * bodies past the size limit, bad cursors, huge pages, path ids that are not
 * UUIDs, strange credentials). For every request:
 *   - no 5xx, and an answer within REQUEST_TIMEOUT_MS (no hang);
 *   - every 4xx is application/problem+json with a stable `code` whose
 *     status is the code's status;
 *   - a refused request that could write (POST, PUT, PATCH, DELETE) wrote
 *     nothing: a fingerprint of every table (row count and xmin sum, which
 *     any INSERT, UPDATE or DELETE changes) is equal before and after.
 *
 * Profiles: FUZZ_REQUESTS (default 1,500, the CI profile; `pnpm fuzz` runs
 * 10,000) and FUZZ_SEED (fixed by default). A failure prints the seed, the
 * fast-check path and the request, so `FUZZ_SEED=<seed> pnpm fuzz` replays it.
 */
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 1_500);
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_c0de);
const REQUEST_TIMEOUT_MS = 5_000;
const BODY_LIMIT = 64 * 1024;

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  $ref?: string;
}

interface Operation {
  readonly method: string;
  /** OpenAPI path, `{id}` style. */
  readonly path: string;
  readonly pathParams: string[];
  readonly query: Record<string, JsonSchema>;
  readonly body: JsonSchema | null;
}

interface FuzzRequest {
  readonly op: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly payload?: string;
}

let h: ApiHarness;
let orgB: SeededOrg;
let fingerprint: () => Promise<DbFingerprint>;
let operations: Operation[];
let pools: Record<string, string[]>;
let csrs: { pem: string; cn: string; sans: string[] }[];
let cursors: string[];

// ---------------------------------------------------------------------------
// The catalogue of operations, from the served OpenAPI document
// ---------------------------------------------------------------------------

interface OpenApiParameter {
  in: string;
  name: string;
  schema?: JsonSchema;
}
interface OpenApiOperation {
  parameters?: OpenApiParameter[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
}

function catalogue(doc: { paths: Record<string, Record<string, OpenApiOperation>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const params = op.parameters ?? [];
      ops.push({
        method: method.toUpperCase(),
        path,
        pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
        query: Object.fromEntries(params.filter((p) => p.in === 'query').map((p) => [p.name, p.schema ?? {}])),
        body: op.requestBody?.content?.['application/json']?.schema ?? null,
      });
    }
  }
  return ops;
}

// ---------------------------------------------------------------------------
// Values: mostly valid ones from the schema, then broken ones
// ---------------------------------------------------------------------------

const NASTY_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\u202egnp.exe',
  '\u200b\u200d\ufeff',
  'é'.normalize('NFD'),
  '🔐🧾✅',
  'Ωμέγα-δοκιμή',
  '名前',
  "'; DROP TABLE jobs; --",
  '%00%2e%2e%2f',
  '../../etc/passwd',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a log4shell probe, literally
  '${jndi:ldap://x}',
  '<script>alert(1)</script>',
  '\\',
  '"',
  '\r\nX-Injected: 1',
  'null',
  'NaN',
  '-0',
  '1e309',
];

/** Percent-encodes like encodeURIComponent, which throws on a lone surrogate; that one goes as U+FFFD. */
function pct(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
  }
}

/** Already percent-encoded byte sequences that are not UTF-8 (overlong, surrogate, stray continuation). */
const INVALID_UTF8 = ['%FF', '%C0%AF', '%ED%A0%80', '%80', '%E2%82', '%00', '%'];

const nastyString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 201, max: 70_000 }).map((n) => 'x'.repeat(n)) },
);

const notUuid = fc.oneof(
  fc.constantFrom(
    '1',
    '0',
    '-1',
    'null',
    'undefined',
    'me',
    '..',
    '%2e%2e',
    '00000000-0000-0000-0000-00000000000g',
    '{00000000-0000-0000-0000-000000000000}',
    '00000000000000000000000000000000',
    'x'.repeat(5_000),
  ),
  fc.string({ minLength: 1, maxLength: 60 }),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.uuid().map((u) => `${u} `),
);

/** Arbitrary for a field name, when the name says more than the schema. */
function special(field: string, schema: JsonSchema): fc.Arbitrary<unknown> | null {
  if (field === 'csr') {
    return fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...csrs.map((c) => c.pem)) },
      { weight: 1, arbitrary: fc.constantFrom(...csrs.map((c) => tamperCsrSignature(c.pem))) },
      { weight: 1, arbitrary: fc.constantFrom(...csrs.map((c) => c.pem.slice(0, Math.floor(c.pem.length / 2)))) },
      {
        weight: 1,
        arbitrary: fc
          .uint8Array({ minLength: 0, maxLength: 600 })
          .map(
            (b) =>
              `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(b).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
          ),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          // A SEQUENCE claiming 4 GiB, a tag with a long-form number, and nested indefinite lengths.
          `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00]).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
          `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from([0x1f, 0x81, 0x80, 0x00]).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
          `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from([0x30, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00]).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
          `${csrs[0]?.pem ?? ''}${csrs[1]?.pem ?? ''}`,
          (csrs[0]?.pem ?? '').replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE'),
        ),
      },
      { weight: 1, arbitrary: nastyString },
    );
  }
  if (field === 'common_name' || field === 'sans' || field === 'allowed_domains') {
    const names = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...csrs.flatMap((c) => [c.cn, ...c.sans])) },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'example.test',
          '*.example.test',
          '*.*.example.test',
          'EXAMPLE.TEST',
          'a..example.test',
          '-a.example.test',
          'xn--nxasmq6b.example.test',
          'δοκιμή.example.test',
          `${'a'.repeat(64)}.example.test`,
          `${'a.'.repeat(130)}test`,
          'localhost',
          '127.0.0.1',
        ),
      },
      { weight: 1, arbitrary: nastyString },
    );
    return schema.type === 'array' ? fc.array(names, { maxLength: 4 }) : names;
  }
  if (field === 'approvers') return fc.array(idFrom(['principals', 'principalsB']), { maxLength: 3 });
  if (field === 'profile_id') return idFrom(['profiles', 'profilesB']);
  if (field === 'principal_id') return idFrom(['principals', 'principalsB']);
  if (field === 'certificate_id') return idFrom(['certificates']);
  if (field === 'checkpoint_id') return idFrom(['checkpoints']);
  if (field === 'requested_by' || field === 'actor') return fc.oneof(idFrom(['principals']), nastyString);
  if (field === 'cursor') return fc.constantFrom(...cursors);
  if (field === 'fingerprint') {
    return fc.oneof(
      fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex')),
      fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) =>
        [...b]
          .map((x) => x.toString(16).padStart(2, '0'))
          .join(':')
          .toUpperCase(),
      ),
      nastyString,
    );
  }
  if (field === 'san') {
    return fc.oneof(
      fc.constantFrom(
        'DNS:svc.example.test',
        'URI:spiffe://example.test/svc',
        'IP:10.0.0.1',
        'DNS:',
        'dns:SVC.example.test',
      ),
      fc.webUrl().map((u) => `URI:${u}`),
      nastyString,
    );
  }
  return null;
}

/** An id from the named pools as they are when the request is generated (accepted requests add to them). */
function idFrom(names: string[]): fc.Arbitrary<string> {
  const known = fc.nat().map((i) => {
    const ids = names.flatMap((n) => pools[n] ?? []);
    return ids[i % Math.max(ids.length, 1)] ?? '00000000-0000-4000-8000-000000000000';
  });
  return fc.oneof({ weight: 5, arbitrary: known }, { weight: 1, arbitrary: fc.uuid() });
}

function valid(schema: JsonSchema, field: string, depth = 0): fc.Arbitrary<unknown> {
  const own = special(field, schema);
  if (own) return own;
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((s) => valid(s, field, depth)));
  if (schema.enum) return fc.constantFrom(...schema.enum);
  switch (schema.type) {
    case 'string': {
      if (schema.format === 'uuid') return idFrom(Object.keys(pools));
      if (schema.format === 'date-time') {
        return fc.oneof(
          fc
            .date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
            .map((d) => d.toISOString()),
          fc.constantFrom(
            '2026-02-30T00:00:00Z',
            '0000-01-01T00:00:00Z',
            '9999-12-31T23:59:60Z',
            '2026-01-01T24:00:00Z',
            '2026-01-01T00:00:00+14:00',
          ),
        );
      }
      if (schema.format === 'email')
        return fc.oneof(fc.emailAddress(), fc.constantFrom('a@b', 'ü@example.test', 'a@[127.0.0.1]'));
      if (schema.pattern) {
        const re = new RegExp(schema.pattern);
        return fc.stringMatching(re, { size: 'small' }).filter((s) => s.length <= (schema.maxLength ?? 200));
      }
      return fc.string({
        minLength: schema.minLength ?? 0,
        maxLength: Math.min(schema.maxLength ?? 40, 40),
        unit: 'grapheme',
      });
    }
    case 'integer':
    case 'number':
      return fc.integer({ min: schema.minimum ?? -1_000, max: schema.maximum ?? 1_000 });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array':
      return fc.array(valid(schema.items ?? {}, field, depth + 1), {
        minLength: schema.minItems ?? 0,
        maxLength: Math.min(schema.maxItems ?? 4, 4),
      });
    case 'object': {
      const props = schema.properties ?? {};
      const required = schema.required ?? [];
      return fc.record(Object.fromEntries(Object.entries(props).map(([k, s]) => [k, valid(s, k, depth + 1)])), {
        requiredKeys: required.filter((k) => k in props),
      });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

const wrongTyped = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, [], {}, [null], { nested: { deeper: [1] } }, ''),
  fc.jsonValue({ maxDepth: 3 }),
);

const SERVER_OWNED = [
  'id',
  'org_id',
  'state',
  'decided_by',
  'decided_at',
  'requested_by',
  'created_at',
  'owner_id',
  'status',
  'role',
  'kind',
];

/** Breaks an otherwise valid body in one of the ways a client (or an attacker) would. */
function broken(schema: JsonSchema, body: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(schema.properties ?? {});
  const required = schema.required ?? [];
  const options: fc.Arbitrary<unknown>[] = [
    // An unknown or server-owned property.
    fc
      .tuple(fc.oneof(fc.constantFrom(...SERVER_OWNED), fc.string({ minLength: 1, maxLength: 12 })), wrongTyped)
      .map(([k, v]) => ({ ...body, [k]: v })),
    // The body is not an object at all.
    fc.oneof(wrongTyped, fc.array(fc.constant(body), { maxLength: 2 })),
    // Deep nesting.
    fc
      .integer({ min: 50, max: 2_000 })
      .map((d) => {
        let v: unknown = body;
        for (let i = 0; i < d; i++) v = { [keys[0] ?? 'a']: v };
        return v;
      }),
  ];
  if (required.length > 0) {
    options.push(
      fc.constantFrom(...required).map((k) => Object.fromEntries(Object.entries(body).filter(([key]) => key !== k))),
    );
  }
  if (keys.length > 0) {
    // One property wrong-typed, oversized or full of hostile unicode.
    options.push(fc.tuple(fc.constantFrom(...keys), wrongTyped).map(([k, v]) => ({ ...body, [k]: v })));
    options.push(fc.tuple(fc.constantFrom(...keys), nastyString).map(([k, v]) => ({ ...body, [k]: v })));
    options.push(
      fc.constantFrom(...keys).map((k) => {
        const max = schema.properties?.[k]?.maxLength ?? 4_000;
        return { ...body, [k]: 'y'.repeat(max + 1) };
      }),
    );
  }
  return fc.oneof(...options);
}

/** How the body travels: mostly honest JSON, sometimes not. */
function encoded(body: unknown): fc.Arbitrary<{ payload?: string; contentType?: string }> {
  const text = JSON.stringify(body) ?? 'null';
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant({ payload: text, contentType: 'application/json' }) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          text.slice(0, Math.max(0, text.length - 1)),
          `${text},`,
          `${text}${text}`,
          `/* c */${text}`,
          "{'single': 'quotes'}",
          '{"a":NaN}',
          '{"__proto__":{"polluted":true}}',
          '{"constructor":{"prototype":{"polluted":true}}}',
          '\ufeff{}',
          '',
          '   ',
          '{"a":"\\ud800"}',
          '{"a":"\\u0000"}',
        )
        .map((payload) => ({ payload, contentType: 'application/json' })),
    },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          'text/plain',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          'application/xml',
          'application/json; charset=utf-16',
          'application/json; charset=latin1',
          'application/problem+json',
          'application/jsonx',
          '*/*',
        )
        .map((contentType) => ({ payload: text, contentType })),
    },
    { weight: 1, arbitrary: fc.constant({ payload: text }) },
    { weight: 1, arbitrary: fc.constant({ contentType: 'application/json' }) },
    // Past the body limit: 413, never parsed.
    {
      weight: 1,
      arbitrary: fc.constant({
        payload: JSON.stringify({ blob: 'z'.repeat(BODY_LIMIT + 10) }),
        contentType: 'application/json',
      }),
    },
  );
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

function credentials(): fc.Arbitrary<string | null> {
  const org = h.org;
  const bearer = (k: string) => `Bearer ${k}`;
  return fc.oneof(
    { weight: 10, arbitrary: fc.constant(bearer(org.admin.key)) },
    {
      weight: 6,
      arbitrary: fc.constantFrom(
        bearer(org.operator1.key),
        bearer(org.requester.key),
        bearer(org.auditor.key),
        bearer(orgB.admin.key),
        bearer(orgB.requester.key),
      ),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        null,
        'Bearer',
        'Bearer ',
        'bearer cs_0_0',
        `Basic ${Buffer.from('admin:admin').toString('base64')}`,
        `Bearer ${org.admin.key}x`,
        `Bearer ${org.admin.key.slice(0, -1)}`,
        `Bearer ${org.admin.key} ${org.admin.key}`,
        `Bearer cs_${'0'.repeat(32)}_${'A'.repeat(43)}`,
        `Bearer ${'a'.repeat(8_000)}`,
        'Bearer ключ',
      ),
    },
  );
}

function pathValue(op: Operation, param: string): fc.Arbitrary<string> {
  const pool = op.path.startsWith('/api/v1/api-keys')
    ? 'victimKeys'
    : op.path.startsWith('/api/v1/principals')
      ? 'principals'
      : op.path.startsWith('/api/v1/profiles')
        ? 'profiles'
        : op.path.startsWith('/api/v1/approvals')
          ? 'approvals'
          : op.path.startsWith('/api/v1/certificates')
            ? 'certificates'
            : op.path.startsWith('/api/v1/jobs')
              ? 'jobs'
              : op.path.startsWith('/api/v1/client-certificates')
                ? 'bindings'
                : op.path.startsWith('/api/v1/audit/checkpoints')
                  ? 'checkpoints'
                  : param;
  return fc.oneof(
    { weight: 6, arbitrary: idFrom([pool]) },
    { weight: 1, arbitrary: idFrom(Object.keys(pools)) },
    { weight: 2, arbitrary: notUuid.map(pct) },
    { weight: 1, arbitrary: fc.constantFrom(...INVALID_UTF8) },
  );
}

const BAD_LIMITS = [
  '0',
  '-1',
  '501',
  '500',
  '1',
  '1.5',
  'abc',
  '',
  '1e3',
  '99999999999999999999',
  ' 5',
  '0x10',
  'Infinity',
];

/** Cursors this api never gave out: extreme and malformed dates and ids, offset cursors out of range, junk. */
const BAD_CURSORS = [
  ...[
    ['+275760-09-13T00:00:00.000Z', '00000000-0000-0000-0000-000000000000'],
    ['-271821-04-20T00:00:00.000Z', '00000000-0000-0000-0000-000000000000'],
    ['-004714-11-24T00:00:00.000Z', '00000000-0000-0000-0000-000000000000'],
    ['0001-01-01T00:00:00.000Z', '00000000-0000-0000-0000-000000000000'],
    ['9999-12-31T23:59:59.999Z', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
    ['2026-01-01', 'not-a-uuid'],
    [1, 2],
    {},
    'o:99999999',
    'o:-1',
    'o:1e3',
    '99999999999999999999',
    '-1',
  ].map((v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')),
  'o:1',
  '%%%',
  '====',
  'x'.repeat(512),
  'x'.repeat(513),
];

const badQueryValues: Record<string, fc.Arbitrary<string>> = {
  limit: fc.oneof(fc.constantFrom(...BAD_LIMITS), fc.integer().map(String)),
  cursor: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...BAD_CURSORS) },
    { weight: 1, arbitrary: fc.base64String({ maxLength: 120 }) },
    { weight: 1, arbitrary: nastyString.map((s) => s.slice(0, 600)) },
  ),
};

/**
 * A query of valid parameters with at most one of them broken, so a broken
 * value is not hidden behind another parameter's 400.
 */
function queryString(op: Operation): fc.Arbitrary<string> {
  const names = Object.keys(op.query);
  const good = fc.tuple(
    ...names.map((name) =>
      fc.option(
        valid(op.query[name] ?? {}, name).map((v) => [name, pct(String(v))] as const),
        { freq: 2 },
      ),
    ),
  );
  const brokenOne =
    names.length === 0
      ? fc.constant(null)
      : fc.oneof(
          { weight: 3, arbitrary: fc.constant(null) },
          {
            weight: 2,
            // Paging parameters reach the database; they are broken more often.
            arbitrary: fc
              .oneof(
                ...names.map((n) => ({
                  weight: n === 'cursor' ? 4 : n === 'limit' ? 2 : 1,
                  arbitrary: fc.constant(n),
                })),
              )
              .chain((name) =>
                fc
                  .oneof(
                    { weight: 4, arbitrary: (badQueryValues[name] ?? nastyString).map(pct) },
                    { weight: 1, arbitrary: fc.constantFrom(...INVALID_UTF8) },
                  )
                  .map((v) => [name, v] as const),
              ),
          },
        );
  const extra = fc.option(
    fc.oneof(
      fc.tuple(fc.constantFrom('org_id', 'unknown', 'limit', 'state', '__proto__'), nastyString.map(pct)),
      fc.tuple(fc.string({ minLength: 1, maxLength: 8 }).map(pct), fc.string({ maxLength: 8 }).map(pct)),
    ),
    { freq: 8 },
  );
  return fc.tuple(good, brokenOne, extra).map(([pairs, bad, more]) => {
    const all = [
      ...pairs.filter((p) => p !== null && p[0] !== bad?.[0]),
      ...(bad ? [bad] : []),
      ...(more ? [more] : []),
    ].filter((p) => p !== null);
    return all.length === 0 ? '' : `?${all.map(([k, v]) => `${k}=${v}`).join('&')}`;
  });
}

/** A coherent certificate request (CSR names match), so the deep paths run too. */
function coherentRequest(): fc.Arbitrary<Record<string, unknown>> {
  return fc
    .tuple(
      fc.constantFrom(...csrs),
      idFrom(['profiles', 'profilesB']),
      fc.option(fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }), { freq: 4 }),
    )
    .map(([c, profile, justification]) => ({
      profile_id: profile,
      common_name: c.cn,
      ...(c.sans.length > 0 ? { sans: c.sans } : {}),
      csr: c.pem,
      ...(justification === null ? {} : { justification }),
    }));
}

function bodyFor(op: Operation): fc.Arbitrary<{ payload?: string; contentType?: string }> {
  const schema = op.body;
  if (!schema) {
    // Operations without a body still get one sometimes.
    return fc.oneof({ weight: 8, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: wrongTyped.chain(encoded) });
  }
  const base =
    op.method === 'POST' && op.path === '/api/v1/certificates'
      ? fc.oneof(coherentRequest(), valid(schema, ''))
      : valid(schema, '');
  return base
    .chain((b) =>
      fc.oneof(
        { weight: 2, arbitrary: fc.constant<unknown>(b) },
        {
          weight: 3,
          arbitrary:
            typeof b === 'object' && b !== null && !Array.isArray(b)
              ? broken(schema, b as Record<string, unknown>)
              : wrongTyped,
        },
      ),
    )
    .chain(encoded);
}

function requestFor(op: Operation): fc.Arbitrary<FuzzRequest> {
  const path = fc.tuple(...op.pathParams.map((p) => pathValue(op, p))).map((values) => {
    let url = op.path;
    op.pathParams.forEach((p, i) => {
      url = url.replace(`{${p}}`, values[i] ?? '');
    });
    return url;
  });
  const idempotency = fc.option(
    fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom('key-1', 'key-2', ' ', 'k'.repeat(300))),
    { freq: 5 },
  );
  return fc
    .record({ url: path, query: queryString(op), body: bodyFor(op), auth: credentials(), idempotency })
    .map(({ url, query, body, auth, idempotency: idem }) => ({
      op: `${op.method} ${op.path}`,
      method: op.method,
      url: `${url}${query}`,
      headers: {
        ...(auth === null ? {} : { authorization: auth }),
        ...(body.contentType ? { 'content-type': body.contentType } : {}),
        ...(idem === null ? {} : { 'idempotency-key': idem }),
      },
      ...(body.payload === undefined ? {} : { payload: body.payload }),
    }));
}

/**
 * Well-formed requests by the right principals, so that accepted writes keep
 * happening and later requests meet requests in every state (pending,
 * decided, renewing) rather than only the fixtures.
 */
function wellFormedRequest(): fc.Arbitrary<FuzzRequest> {
  const A = h.org;
  const json = (op: string, url: string, key: string, body: unknown): FuzzRequest => ({
    op,
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
  const requester = fc.constantFrom(A.requester.key, A.operator1.key, A.admin.key);
  const approver = fc.constantFrom(A.operator1.key, A.operator2.key, A.admin.key);
  const submit = fc
    .tuple(
      fc.constantFrom(...csrs),
      fc.constantFrom(A.gated.id, A.open.id),
      requester,
      fc.string({ minLength: 1, maxLength: 40 }),
    )
    .map(([c, profile, key, why]) =>
      json('POST /api/v1/certificates', '/api/v1/certificates', key, {
        profile_id: profile,
        common_name: c.cn,
        ...(c.sans.length > 0 ? { sans: c.sans } : {}),
        csr: c.pem,
        justification: why,
      }),
    );
  const decide = fc
    .tuple(
      idFrom(['approvals']),
      fc.constantFrom('approve', 'reject', 'void'),
      approver,
      fc.string({ minLength: 1, maxLength: 40 }),
    )
    .map(([id, action, key, note]) =>
      json(
        `POST /api/v1/approvals/{id}/${action}`,
        `/api/v1/approvals/${id}/${action}`,
        key,
        action === 'void' ? { reason: note } : { note },
      ),
    );
  const renew = fc.tuple(idFrom(['certificates']), requester).map(([id, key]) =>
    json('POST /api/v1/certificates/{id}/renew', `/api/v1/certificates/${id}/renew`, key, {
      justification: 'rotate',
    }),
  );
  return fc.oneof({ weight: 3, arbitrary: submit }, { weight: 3, arbitrary: decide }, { weight: 1, arbitrary: renew });
}

/** Requests no document lists: unknown paths, unknown methods on known paths. */
function strayRequest(): fc.Arbitrary<FuzzRequest> {
  return fc
    .tuple(
      fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'),
      fc.oneof(
        fc.constantFrom(...operations.map((o) => o.path.replace(/\{[^}]+\}/g, '00000000-0000-0000-0000-000000000000'))),
        fc.webPath().map((p) => `/api/v1${p}`),
        fc.constantFrom(
          '/api',
          '/api/',
          '/api/v2/profiles',
          '/API/v1/profiles',
          '/api/v1/profiles/../me',
          '//api/v1/me',
          '/api/v1/%2e%2e/me',
        ),
      ),
      credentials(),
    )
    .map(
      ([method, url, auth]): FuzzRequest => ({
        op: 'stray',
        method,
        url,
        headers: auth === null ? {} : { authorization: auth },
      }),
    );
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const CODES = new Set(Object.keys(ERROR_STATUS));

function describeRequest(r: FuzzRequest): string {
  const payload =
    r.payload === undefined
      ? ''
      : ` body=${JSON.stringify(r.payload.slice(0, 300))}${r.payload.length > 300 ? `… (${r.payload.length} chars)` : ''}`;
  return `${r.method} ${r.url.slice(0, 300)} headers=${JSON.stringify(Object.keys(r.headers))}${payload}`;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms (hang): ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Ids from accepted submissions join the pools later requests draw from. */
function remember(body: {
  certificate?: { id?: unknown };
  job?: { id?: unknown };
  approval?: { id?: unknown } | null;
}) {
  const add = (pool: string, id: unknown) => {
    if (typeof id === 'string' && !pools[pool]?.includes(id)) pools[pool]?.push(id);
  };
  add('certificates', body.certificate?.id);
  add('jobs', body.job?.id);
  add('approvals', body.approval?.id);
}

const stats = { requests: 0, byStatus: new Map<number, number>(), rejectedWrites: 0, accepted: 0, maxMs: 0 };
let lastFingerprint: DbFingerprint;

async function check(r: FuzzRequest): Promise<void> {
  const started = performance.now();
  const res = await withTimeout(
    h.app.inject({
      method: r.method as InjectOptions['method'],
      url: r.url,
      headers: r.headers,
      ...(r.payload === undefined ? {} : { payload: r.payload }),
    }),
    REQUEST_TIMEOUT_MS,
    describeRequest(r),
  );
  const ms = performance.now() - started;
  stats.requests++;
  stats.maxMs = Math.max(stats.maxMs, ms);
  stats.byStatus.set(res.statusCode, (stats.byStatus.get(res.statusCode) ?? 0) + 1);
  const what = `${describeRequest(r)}\n  -> ${res.statusCode} ${res.body.slice(0, 400)}`;

  if (res.statusCode >= 500) throw new Error(`5xx: ${what}`);
  if (res.statusCode >= 400) {
    const type = String(res.headers['content-type'] ?? '');
    if (!type.startsWith('application/problem+json')) throw new Error(`4xx without problem+json: ${what}`);
    const body = JSON.parse(res.body) as { code?: unknown; status?: unknown };
    if (typeof body.code !== 'string' || !CODES.has(body.code)) throw new Error(`4xx without a known code: ${what}`);
    if (ERROR_STATUS[body.code as ErrorCode] !== res.statusCode || body.status !== res.statusCode) {
      throw new Error(`status ${res.statusCode} does not match code ${body.code}: ${what}`);
    }
  }
  if (res.statusCode === 202) remember(JSON.parse(res.body));
  if (MUTATING.has(r.method)) {
    const after = await fingerprint();
    if (res.statusCode >= 400) {
      stats.rejectedWrites++;
      const changed = changedTables(lastFingerprint, after);
      if (changed.length > 0) throw new Error(`a refused request wrote to ${changed.join(', ')}: ${what}`);
    } else {
      stats.accepted++;
    }
    lastFingerprint = after;
  }
}

beforeAll(async () => {
  // Limits high enough that the fuzzer reaches the handlers; abuse-limits.int.test.ts covers the limits.
  h = await startApiHarness({
    bodyLimit: BODY_LIMIT,
    limits: { submitPerMinute: 1_000_000, decidePerMinute: 1_000_000, maxOpenRequests: 1_000_000 },
  });
  orgB = await seedOrg(h.tdb.handle.db);
  const db = h.tdb.handle.db;
  const A = h.org;

  csrs = [];
  for (const [cn, sans] of [
    ['fuzz-a.example.test', []],
    ['fuzz-b.example.test', ['www.fuzz-b.example.test']],
    ['example.test', []],
    ['outside.not-allowed.test', []],
  ] as const) {
    csrs.push({ pem: (await csrFor(cn, [...sans])).csrPem, cn, sans: [...sans] });
  }

  // Objects to aim at, in both orgs.
  const submitted = [];
  for (const [key, profile] of [
    [A.requester.key, A.gated.id],
    [A.operator1.key, A.gated.id],
    [A.requester.key, A.open.id],
    [orgB.requester.key, orgB.gated.id],
  ] as const) {
    const c = csrs[0];
    const r = await h.call(key, {
      method: 'POST',
      url: '/api/v1/certificates',
      payload: { profile_id: profile, common_name: c?.cn, csr: c?.pem, justification: 'fuzz fixture' },
    });
    expect(r.status).toBe(202);
    submitted.push(r.body as { certificate: { id: string }; job: { id: string }; approval: { id: string } | null });
  }
  const svc = await createPrincipal(db, A.admin, { name: 'fuzz-svc', role: 'operator', kind: 'service' });
  const binding = await h.call(A.admin.key, {
    method: 'POST',
    url: `/api/v1/principals/${svc.id}/client-certificates`,
    payload: { san: 'DNS:fuzz-svc.example.test' },
  });
  expect(binding.status).toBe(201);
  const victimKeys = [];
  for (let i = 0; i < 5; i++) {
    victimKeys.push((await createEnrollmentKey(db, { id: A.admin.id, type: 'user' }, A.orgId, A.requester.id, {})).id);
  }
  const checkpoint = await h.call(A.admin.key, { method: 'POST', url: '/api/v1/audit/checkpoints', payload: {} });

  pools = {
    profiles: [A.gated.id, A.open.id],
    profilesB: [orgB.gated.id, orgB.open.id],
    principals: [A.admin.id, A.operator1.id, A.requester.id, A.auditor.id, svc.id],
    principalsB: [orgB.admin.id, orgB.requester.id],
    approvals: submitted.flatMap((s) => (s.approval ? [s.approval.id] : [])),
    certificates: submitted.map((s) => s.certificate.id),
    jobs: submitted.map((s) => s.job.id),
    bindings: [binding.body.id as string],
    victimKeys,
    checkpoints: checkpoint.status < 300 ? [checkpoint.body.id as string] : [],
  };

  // Real cursors, so deep pages are reached too.
  cursors = [];
  for (const url of [
    '/api/v1/approvals',
    '/api/v1/certificates',
    '/api/v1/jobs',
    '/api/v1/profiles',
    '/api/v1/principals',
  ]) {
    const r = await h.call(A.admin.key, { method: 'GET', url: `${url}?limit=1` });
    if (typeof r.body?.next_cursor === 'string') cursors.push(r.body.next_cursor);
  }

  operations = catalogue(h.app.swagger() as unknown as { paths: Record<string, Record<string, OpenApiOperation>> });
  fingerprint = fingerprinter(h.tdb, await tableNames(h.tdb));
  lastFingerprint = await fingerprint();
}, 120_000);
afterAll(async () => h?.close());

/**
 * Before the random phase, a systematic sweep: every hostile query value on
 * every query parameter, every malformed id in every path parameter, and the
 * worst strings in every string field of every body, each alone on an
 * otherwise valid admin request, so CI meets each of them on every run.
 */
function corpus(): FuzzRequest[] {
  const out: FuzzRequest[] = [];
  const admin = { authorization: `Bearer ${h.org.admin.key}` };
  const worst = [
    '\u0000',
    'a\u0000b',
    '\ud800',
    '\u202egnp.exe',
    '🔐',
    '',
    ' ',
    'x'.repeat(70_000),
    "'; DROP TABLE jobs; --",
  ];
  for (const op of operations) {
    const [baseUrl] = fc.sample(
      fc.tuple(...op.pathParams.map((p) => idFrom([p === 'id' ? 'approvals' : p]))).map((values) => {
        let url = op.path;
        op.pathParams.forEach((p, i) => {
          url = url.replace(`{${p}}`, values[i] ?? '');
        });
        return url;
      }),
      { seed: SEED, numRuns: 1 },
    );
    const url = baseUrl ?? op.path;
    const [baseBody] = op.body
      ? fc.sample(op.path === '/api/v1/certificates' ? coherentRequest() : valid(op.body, ''), {
          seed: SEED,
          numRuns: 1,
        })
      : [undefined];
    const body = (b: unknown) =>
      b === undefined ? {} : { payload: JSON.stringify(b), headers: { ...admin, 'content-type': 'application/json' } };
    const base = (u: string, b: unknown = baseBody): FuzzRequest => ({
      op: `${op.method} ${op.path}`,
      method: op.method,
      url: u,
      headers: admin,
      ...body(b),
    });
    for (const name of Object.keys(op.query)) {
      const values =
        name === 'cursor' ? BAD_CURSORS : name === 'limit' ? BAD_LIMITS : worst.map((w) => w.slice(0, 300));
      for (const v of [...values.map(pct), ...INVALID_UTF8]) out.push(base(`${url}?${name}=${v}`));
    }
    for (const p of op.pathParams) {
      for (const bad of [
        '1',
        'null',
        '..',
        '%2e%2e',
        '00000000-0000-0000-0000-00000000000g',
        'x'.repeat(5_000),
        ...INVALID_UTF8,
      ]) {
        out.push(base(op.path.replace(`{${p}}`, bad).replace(/\{[^}]+\}/g, '00000000-0000-4000-8000-000000000000')));
      }
    }
    if (baseBody !== null && typeof baseBody === 'object' && !Array.isArray(baseBody) && op.body?.properties) {
      for (const [field, schema] of Object.entries(op.body.properties)) {
        if (schema.type !== 'string' && !schema.anyOf) continue;
        for (const w of worst) out.push(base(url, { ...(baseBody as Record<string, unknown>), [field]: w }));
      }
    }
  }
  return out;
}

describe(`API fuzzing from the OpenAPI document (${REQUESTS} requests, seed ${SEED})`, () => {
  it('a systematic sweep of hostile values answers no 5xx and writes nothing when it refuses', async () => {
    const requests = corpus();
    const failures: string[] = [];
    for (const r of requests) {
      await check(r).catch((err: unknown) => failures.push(err instanceof Error ? err.message : String(err)));
    }
    console.log(`fuzz corpus: ${requests.length} requests, ${failures.length} failures`);
    expect(failures.slice(0, 10)).toEqual([]);
    expect(requests.length).toBeGreaterThan(500);
  }, 120_000);

  it(
    'never answers 5xx, never hangs, answers every 4xx with problem+json and a code, and never writes on a refusal',
    async () => {
      expect(operations.length).toBeGreaterThanOrEqual(25);
      Object.assign(stats, { requests: 0, byStatus: new Map(), rejectedWrites: 0, accepted: 0, maxMs: 0 });
      const perOperation = operations.map((op) => ({
        weight: MUTATING.has(op.method) ? 3 : 2,
        arbitrary: requestFor(op),
      }));
      const anyRequest = fc.oneof(
        { weight: 16, arbitrary: fc.oneof(...perOperation) },
        { weight: 4, arbitrary: wellFormedRequest() },
        { weight: 1, arbitrary: strayRequest() },
      );
      const result = await fc.check(fc.asyncProperty(anyRequest, check), {
        seed: SEED,
        numRuns: REQUESTS,
        // Shrinking replays requests against a database that kept moving; the first failure is the useful one.
        endOnFailure: true,
      });
      const byStatus = Object.fromEntries([...stats.byStatus.entries()].sort(([a], [b]) => a - b));
      console.log(
        `fuzz: ${stats.requests} requests (seed ${SEED}), statuses ${JSON.stringify(byStatus)}, ` +
          `${stats.rejectedWrites} refused writes checked, ${stats.accepted} accepted writes, slowest ${stats.maxMs.toFixed(0)} ms`,
      );
      if (result.failed) {
        const cause =
          result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance);
        throw new Error(
          `fuzz failure after ${result.numRuns} requests; replay with FUZZ_SEED=${result.seed} FUZZ_REQUESTS=${REQUESTS} ` +
            `(fast-check path ${result.counterexamplePath}):\n${cause}`,
        );
      }
      expect(stats.requests).toBe(REQUESTS);
      // Not vacuous: refusals and acceptances both happened, across many statuses.
      expect(stats.rejectedWrites).toBeGreaterThan(REQUESTS / 10);
      expect(stats.accepted).toBeGreaterThan(0);
      expect(Object.keys(byStatus).length).toBeGreaterThanOrEqual(6);
    },
    60_000 + REQUESTS * 40,
  );
});
