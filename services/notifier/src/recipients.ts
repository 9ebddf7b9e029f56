import { type ApprovalRow, certificates, type Db, identity, type PrincipalRow } from '@countersign/db';

/**
 * Who receives which mail (issue 3):
 * - a new request and its reminders: every eligible approver (the profile's
 *   approvers who are operators or admins, and every org admin), never the
 *   requester, plus the profile's escalation contacts for reminders;
 * - a decision or an issued certificate: the requester, or the certificate's
 *   owner when the system scheduler asked (automatic renewals).
 * Disabled principals are not mailed. A principal without an address still
 * gets a delivery record, `skipped` with the reason, so nothing vanishes.
 */
export interface Recipient {
  /** The delivery record's recipient: a lower-cased address, or principal:<id> without one. */
  readonly key: string;
  readonly address: string | null;
  readonly principalId: string | null;
  readonly skipReason: string | null;
}

const normalize = (address: string): string => address.trim().toLowerCase();

function principalRecipient(p: PrincipalRow): Recipient {
  const address = p.email?.trim() ? normalize(p.email) : null;
  return {
    key: address ?? `principal:${p.id}`,
    address,
    principalId: p.id,
    skipReason: address ? null : `principal ${p.name} has no email address`,
  };
}

/** Keeps the first of each key, and never a key (or address) in `exclude`. */
export function mergeRecipients(lists: readonly (readonly Recipient[])[], exclude: ReadonlySet<string>): Recipient[] {
  const seen = new Map<string, Recipient>();
  for (const r of lists.flat()) {
    if (exclude.has(r.key) || (r.principalId !== null && exclude.has(r.principalId))) continue;
    if (!seen.has(r.key)) seen.set(r.key, r);
  }
  return [...seen.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** The principal behind a request, as shown in mails: "name <email>" or the system actor's id. */
export function describePrincipal(p: PrincipalRow | undefined, fallbackId: string): string {
  if (!p) return fallbackId;
  return p.email ? `${p.name} <${p.email}>` : p.name;
}

/**
 * The reads of one event's recipients. A principal is read once per event:
 * the requester is both named in a mail and kept out of its recipients.
 */
export interface RecipientReads {
  readonly db: Db;
  principal(orgId: string, id: string): Promise<PrincipalRow | undefined>;
}

export function recipientReads(db: Db): RecipientReads {
  const principals = new Map<string, Promise<PrincipalRow | undefined>>();
  return {
    db,
    principal(orgId, id) {
      const key = `${orgId}/${id}`;
      let p = principals.get(key);
      if (!p) {
        p = identity.findPrincipal(db, orgId, id);
        principals.set(key, p);
        // A failed read is not remembered: a retry reads again.
        p.catch(() => principals.delete(key));
      }
      return p;
    },
  };
}

/** The requester's identities to keep out of approver mail: the principal id and its address. */
export async function requesterExclusions(reads: RecipientReads, a: ApprovalRow): Promise<Set<string>> {
  const out = new Set<string>([a.requested_by]);
  if (a.requester_type !== 'system') {
    const p = await reads.principal(a.org_id, a.requested_by);
    if (p?.email) out.add(normalize(p.email));
  }
  return out;
}

export async function approverRecipients(reads: RecipientReads, a: ApprovalRow): Promise<Recipient[]> {
  const [eligible, exclude] = await Promise.all([
    identity.findEligibleApprovers(reads.db, a.org_id, a.profile_id, a.requested_by),
    requesterExclusions(reads, a),
  ]);
  return mergeRecipients([eligible.map(principalRecipient)], exclude);
}

/** Every enabled admin of the org but the requester (and its address): who may approve a configuration change. */
export async function adminRecipients(reads: RecipientReads, orgId: string, requestedBy: string): Promise<Recipient[]> {
  const [admins, requester] = await Promise.all([
    identity.findEnabledAdmins(reads.db, orgId),
    reads.principal(orgId, requestedBy),
  ]);
  const exclude = new Set<string>([requestedBy]);
  if (requester?.email) exclude.add(normalize(requester.email));
  return mergeRecipients([admins.map(principalRecipient)], exclude);
}

/** The admin who asked for a configuration change, told of its outcome. */
export async function configRequesterRecipient(
  reads: RecipientReads,
  orgId: string,
  requestedBy: string,
): Promise<Recipient | null> {
  const p = await reads.principal(orgId, requestedBy);
  if (!p) return null;
  const r = principalRecipient(p);
  return p.disabled_at === null ? r : { ...r, skipReason: `principal ${p.name} is disabled` };
}

export function contactRecipients(addresses: readonly string[]): Recipient[] {
  return addresses
    .filter((a) => a.includes('@'))
    .map((a) => ({ key: normalize(a), address: normalize(a), principalId: null, skipReason: null }));
}

/**
 * The person told about a decision or an issued certificate: the requesting
 * principal, or for a request made by the system (automatic renewal) the owner
 * of the certificate.
 */
export async function requesterRecipient(
  reads: RecipientReads,
  q: { orgId: string; requestedBy: string; requesterType: string; certificateId: string },
): Promise<{ recipient: Recipient | null; principal: PrincipalRow | undefined }> {
  let principalId = q.requestedBy;
  if (q.requesterType === 'system') {
    const cert = await certificates.findCertificate(reads.db, q.orgId, q.certificateId);
    if (!cert) return { recipient: null, principal: undefined };
    principalId = cert.owner_id;
  }
  const p = await reads.principal(q.orgId, principalId);
  if (!p) return { recipient: null, principal: undefined };
  const r = principalRecipient(p);
  return {
    recipient: p.disabled_at === null ? r : { ...r, skipReason: `principal ${p.name} is disabled` },
    principal: p,
  };
}
