import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { approvals, certificates, type Db, jobs, profiles } from '@countersign/db';
import { notFound, readsOnlyOwn } from '@countersign/domain';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { who } from '../auth.ts';
import { errorResponses, IdParams, Nullable, Uuid } from '../schemas.ts';

/**
 * What an approver is really deciding on a renewal: which names the new
 * certificate adds or drops, whether the key is reused or replaced, and how
 * long it will be valid, against the certificate it renews. The renewed
 * certificate is read from its signed leaf (not from the mutable certificate
 * row), so the answer stays true after the renewal itself is issued.
 */
const KeySchema = Type.Object({ algorithm: Type.String(), spki_sha256: Type.String() });
const SideFields = {
  common_name: Type.String(),
  names: Type.Array(Type.String()),
  key: KeySchema,
};
const DiffSchema = Type.Object({
  approval_id: Uuid,
  job_id: Uuid,
  certificate_id: Uuid,
  kind: Type.String(),
  current: Nullable(
    Type.Object({
      ...SideFields,
      version_id: Uuid,
      serial: Type.String(),
      not_before: Type.String({ format: 'date-time' }),
      not_after: Type.String({ format: 'date-time' }),
    }),
  ),
  proposed: Type.Object({ ...SideFields, validity_days: Type.Integer() }),
  names_added: Type.Array(Type.String()),
  names_removed: Type.Array(Type.String()),
  names_kept: Type.Array(Type.String()),
  common_name_changed: Type.Boolean(),
  key_change: Type.Union([Type.Literal('reused'), Type.Literal('changed'), Type.Literal('new')]),
  current_validity_days: Nullable(Type.Integer()),
});

const DAY_MS = 86_400_000;

function describeKey(key: KeyObject): { algorithm: string; spki_sha256: string } {
  const spki = key.export({ type: 'spki', format: 'der' });
  const d = key.asymmetricKeyDetails ?? {};
  const curves: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };
  const algorithm =
    key.asymmetricKeyType === 'ec'
      ? `ECDSA ${curves[d.namedCurve ?? ''] ?? d.namedCurve ?? ''}`.trim()
      : key.asymmetricKeyType === 'rsa'
        ? `RSA ${d.modulusLength ?? ''}`.trim()
        : (key.asymmetricKeyType ?? 'unknown');
  return { algorithm, spki_sha256: createHash('sha256').update(spki).digest('hex') };
}

/** DNS names of a leaf, from its subjectAltName ("DNS:a, DNS:b"). */
function leafNames(x: X509Certificate): string[] {
  const names = (x.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  return [...new Set(names)].sort();
}

const leafCommonName = (x: X509Certificate): string => /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1] ?? '';

export function diffRoutes(app: FastifyInstance, db: Db): void {
  app.get(
    '/api/v1/approvals/:id/diff',
    {
      schema: {
        tags: ['approvals'],
        summary: 'What the request changes: names added and removed, key reused or changed, validity',
        params: IdParams,
        response: { 200: DiffSchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const a = await approvals.findApproval(db, p.orgId, (req.params as { id: string }).id);
      if (!a || (readsOnlyOwn(p) && a.requested_by !== p.id)) throw notFound('approval request');
      const job = await jobs.findJob(db, p.orgId, a.job_id);
      if (!job) throw notFound('job');
      const profile = await profiles.findProfile(db, p.orgId, job.profile_id);

      // The version this job renews: the newest one signed before the job was asked for.
      const versions = await certificates.listVersions(db, job.certificate_id);
      const previous = versions.find((v) => v.job_id !== job.id && v.created_at <= job.created_at);

      const proposedNames = [...new Set(job.sans.map((s) => s.toLowerCase()))].sort();
      const proposedKey = describeKey(createPublicKey({ key: job.public_key, format: 'der', type: 'spki' }));
      const proposed = {
        common_name: job.common_name,
        names: proposedNames,
        key: proposedKey,
        validity_days: profile?.validity_days ?? 0,
      };
      const base = { approval_id: a.id, job_id: job.id, certificate_id: job.certificate_id, kind: job.kind };

      if (!previous) {
        return {
          ...base,
          current: null,
          proposed,
          names_added: proposedNames,
          names_removed: [],
          names_kept: [],
          common_name_changed: false,
          key_change: 'new' as const,
          current_validity_days: null,
        };
      }
      const leaf = new X509Certificate(previous.leaf_pem);
      const currentNames = leafNames(leaf);
      const currentKey = describeKey(leaf.publicKey);
      const currentCn = leafCommonName(leaf);
      return {
        ...base,
        current: {
          common_name: currentCn,
          names: currentNames,
          key: currentKey,
          version_id: previous.id,
          serial: previous.serial,
          not_before: previous.not_before.toISOString(),
          not_after: previous.not_after.toISOString(),
        },
        proposed,
        names_added: proposedNames.filter((n) => !currentNames.includes(n)),
        names_removed: currentNames.filter((n) => !proposedNames.includes(n)),
        names_kept: proposedNames.filter((n) => currentNames.includes(n)),
        common_name_changed: currentCn.toLowerCase() !== job.common_name.toLowerCase(),
        key_change: currentKey.spki_sha256 === proposedKey.spki_sha256 ? ('reused' as const) : ('changed' as const),
        current_validity_days: Math.round((previous.not_after.getTime() - previous.not_before.getTime()) / DAY_MS),
      };
    },
  );
}
