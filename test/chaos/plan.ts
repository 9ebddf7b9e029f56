import type { Prng } from './prng.ts';

/**
 * The workload and fault plans of one run, drawn from the seed before the
 * stack starts: which principal submits what through which channel, how each
 * approval request is meant to end (and the noise around it), and which faults
 * hit the stack in which order.
 */
export const PRINCIPALS = ['admin', 'alice', 'bob', 'carol', 'dave', 'erin', 'frank'] as const;
export type PrincipalName = (typeof PRINCIPALS)[number];

/** single: production, 1 of (alice, bob); mofn: 2 of (alice, bob, erin); short: 5 s timeout; open: no approval. */
export type ProfileKind = 'single' | 'mofn' | 'short' | 'open';
export const PROFILE_APPROVERS: Record<ProfileKind, readonly PrincipalName[]> = {
  single: ['alice', 'bob'],
  mofn: ['alice', 'bob', 'erin'],
  short: ['alice', 'bob'],
  open: [],
};
export const APPROVALS_REQUIRED: Record<ProfileKind, number> = { single: 1, mofn: 2, short: 1, open: 0 };
export const SHORT_TIMEOUT_MS = 5_000;

export type Submitter = 'carol' | 'frank' | 'alice' | 'erin';
export type Channel = 'http' | 'queue';
export type Outcome = 'approve' | 'reject' | 'void' | 'leave' | 'race';
/**
 * The refused decision attempt of an op, made before its steps (while the request is still pending, so a
 * wrong 200 would really write): self (the requester), outsider (no right to decide this profile), double-vote
 * (the first approver again), enrollment (an eligible approver, with the enrollment key an admin made for it)
 * and related (the admin, who created the requester: never the second person, SPEC §1.6).
 */
export type Noise = 'self' | 'outsider' | 'double-vote' | 'enrollment' | 'related' | null;

export type Step =
  | { kind: 'approve'; by: PrincipalName }
  | { kind: 'reject'; by: PrincipalName }
  | { kind: 'void'; by: 'admin' }
  /** Fired together: exactly one terminal decision may win. */
  | { kind: 'concurrent'; steps: Step[] };

export interface OpPlan {
  readonly index: number;
  /** Idempotency-Key (HTTP) or idempotency_key (queue); the same on every retry. */
  readonly key: string;
  readonly submitter: Submitter;
  readonly channel: Channel;
  readonly profile: ProfileKind;
  /** Renew an earlier certificate of this submitter on this profile when there is one. */
  readonly renew: boolean;
  readonly outcome: Outcome;
  readonly noise: Noise;
  /** Who makes the refused decision attempt of the noise (self, outsider, double vote, enrollment, related). */
  readonly noiseBy: PrincipalName | null;
  /** What the enrollment and related attempts try: approve or reject (both must be refused alike). */
  readonly noiseKind: 'approve' | 'reject';
  readonly steps: readonly Step[];
  /** Wait between acceptance and the first decision (short profile: sometimes past the deadline). */
  readonly decideAfterMs: number;
  /** Wait between two sequential steps. */
  readonly stepGapMs: number;
}

/**
 * Who may decide requests of a profile: its approvers, never the requester. Not the admin: it created every
 * other principal of the chaos org (and their intake accounts), so by provenance it is never the second person
 * on their requests (SPEC §1.6); it only voids, and tries to decide as the `related` noise.
 */
export function eligibleDeciders(profile: ProfileKind, submitter: Submitter): PrincipalName[] {
  return PROFILE_APPROVERS[profile].filter((p) => p !== submitter);
}

export function planWorkload(rng: Prng, seed: number, requests: number): OpPlan[] {
  const ops: OpPlan[] = [];
  for (let index = 0; index < requests; index++) {
    const submitter = rng.weighted<Submitter>({ carol: 40, frank: 30, alice: 15, erin: 15 });
    const channel = rng.weighted<Channel>({ http: 70, queue: 30 });
    const profile = rng.weighted<ProfileKind>({ single: 35, mofn: 25, short: 25, open: 15 });
    const renew = rng.chance(0.12);
    const eligible = rng.shuffle(eligibleDeciders(profile, submitter));
    const required = APPROVALS_REQUIRED[profile];
    let outcome: Outcome = 'approve';
    let steps: Step[] = [];
    let noise: Noise = null;
    let noiseBy: PrincipalName | null = null;
    let noiseKind: 'approve' | 'reject' = 'approve';
    if (profile !== 'open') {
      outcome = rng.weighted<Outcome>({ approve: 50, reject: 14, void: 8, leave: 10, race: 18 });
      // One approver left when an approver of a 1-of-2 profile submits; always two for the 2-of-3 profile.
      const [d1, d2, d3] = eligible as [PrincipalName, PrincipalName | undefined, PrincipalName | undefined];
      const vote = (by: PrincipalName): Step => ({ kind: 'approve', by });
      // M of N: a first vote before the decisive step, sometimes.
      const lead: Step[] = required === 2 && rng.chance(0.6) ? [vote(d1)] : [];
      const next = lead.length ? (d2 ?? d1) : d1;
      // The racing rejecter; the same approver as the racing vote when it is the only one (one of the two wins).
      const other = lead.length ? (d3 ?? d1) : (d2 ?? d1);
      switch (outcome) {
        case 'approve':
          steps = eligible.slice(0, required).map(vote);
          break;
        case 'reject':
          steps = [...lead, { kind: 'reject', by: next }];
          break;
        case 'void':
          steps = [...lead, { kind: 'void', by: 'admin' }];
          break;
        case 'leave':
          steps = lead.length && rng.chance(0.5) ? lead : [];
          break;
        case 'race': {
          const racers: Step[] =
            required === 2 && lead.length === 0
              ? [vote(d1), vote(d2 ?? d1), { kind: 'reject', by: d3 ?? d1 }]
              : [vote(next), { kind: 'reject', by: other }];
          if (rng.chance(0.3)) racers.push({ kind: 'void', by: 'admin' });
          steps = [...lead, { kind: 'concurrent', steps: rng.shuffle(racers) }];
          break;
        }
      }
      const drawn = rng.weighted({
        none: 64,
        self: 8,
        outsider: 8,
        'double-vote': required === 2 ? 5 : 0,
        enrollment: 9,
        related: 6,
      });
      noise = drawn === 'none' ? null : drawn;
      if (noise === 'self') noiseBy = submitter;
      if (noise === 'outsider') {
        // The admin is no outsider (it may decide by role); its refusal is the `related` noise.
        const outsiders = PRINCIPALS.filter(
          (p) => p !== submitter && p !== 'admin' && !eligibleDeciders(profile, submitter).includes(p),
        );
        noiseBy = rng.pick(outsiders);
      }
      if (noise === 'enrollment') noiseBy = rng.pick(eligibleDeciders(profile, submitter));
      if (noise === 'related') noiseBy = 'admin';
      if (noise === 'enrollment' || noise === 'related') noiseKind = rng.chance(0.5) ? 'approve' : 'reject';
      if (noise === 'double-vote') {
        // The same approver votes twice in a row: the second is already_voted.
        const first = steps[0];
        if (first?.kind === 'approve') noiseBy = first.by;
        else noise = null;
      }
    }
    ops.push({
      index,
      key: `chaos-${seed}-${index}`,
      submitter,
      channel,
      profile,
      renew,
      outcome,
      noise,
      noiseBy,
      noiseKind,
      steps,
      // The short profile's 5 s deadline: about half its decisions come too late.
      decideAfterMs: profile === 'short' ? rng.int(0, 9_000) : rng.int(0, 1_500),
      stepGapMs: rng.int(0, 400),
    });
  }
  return ops;
}

export type FaultKind = 'kill' | 'stop' | 'redis-wipe' | 'flushall' | 'pg-terminate' | 'pg-restart';
export const FAULT_KINDS: readonly FaultKind[] = [
  'kill',
  'stop',
  'redis-wipe',
  'flushall',
  'pg-terminate',
  'pg-restart',
];

export interface FaultProfile {
  /** Faults every run injects at least once, in a seeded order. */
  readonly mandatory: readonly FaultKind[];
  /** Further faults while the workload runs, by weight. */
  readonly extra: Partial<Record<FaultKind, number>>;
  /** Upper bound on the number of faults (mandatory included). */
  readonly maxFaults: number;
  /** Pause between two faults. */
  readonly gapMs: readonly [number, number];
  /** How long a killed process stays down before its restart. */
  readonly killDownMs: readonly [number, number];
  readonly redisDownMs: readonly [number, number];
  readonly pgDownMs: readonly [number, number];
}

export const FAULT_PROFILES: Record<'ci' | 'full', FaultProfile> = {
  // Bounded for CI: no SIGSTOP (it has to outlast a 30 s lock), few faults, short gaps.
  ci: {
    mandatory: ['kill', 'pg-terminate', 'redis-wipe', 'kill', 'flushall', 'pg-restart', 'kill'],
    extra: {},
    maxFaults: 7,
    gapMs: [1_000, 2_500],
    killDownMs: [300, 2_000],
    redisDownMs: [500, 1_500],
    pgDownMs: [200, 1_000],
  },
  full: {
    mandatory: ['stop', 'kill', 'redis-wipe', 'pg-terminate', 'flushall', 'pg-restart', 'kill'],
    extra: { kill: 70, 'pg-terminate': 15, 'pg-restart': 8, stop: 7 },
    maxFaults: 1_000,
    gapMs: [2_000, 8_000],
    killDownMs: [300, 5_000],
    redisDownMs: [500, 3_000],
    pgDownMs: [200, 2_000],
  },
};
