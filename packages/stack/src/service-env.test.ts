import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NEVER_FOR_SERVICES, SECRETS_ONLY_FOR, serviceEnv } from './service-env.ts';
import { SERVICE_NAMES } from './service-process.ts';

/**
 * What each service process of the local stack is handed: the application
 * role's URL and its own secrets, never the owner's or the superuser's URL,
 * another service's secret, or anything in the offline CA directory.
 */
const dataDir = '/srv/countersign-data';
const caOfflineDir = join(dataDir, 'ca-offline');
const appUrl = 'postgres://countersign_app:app-pw@127.0.0.1:5432/countersign';
const ownerUrl = 'postgres://countersign_owner:owner-pw@127.0.0.1:5432/countersign';
const superuserUrl = 'postgres://postgres:su-pw@127.0.0.1:5432/postgres';

// What startStack builds, plus everything a careless caller might add.
const stackEnv: NodeJS.ProcessEnv = {
  PATH: '/usr/bin',
  COUNTERSIGN_DATABASE_URL: appUrl,
  COUNTERSIGN_REDIS_URL: 'redis://127.0.0.1:6379',
  COUNTERSIGN_PUBLIC_URL: 'http://127.0.0.1:8080',
  COUNTERSIGN_CA_DIR: join(dataDir, 'ca'),
  COUNTERSIGN_AUDIT_SIGNING_KEY_FILE: join(dataDir, 'audit-signing.key'),
  COUNTERSIGN_SMTP_URL: 'smtp://127.0.0.1:2525',
  COUNTERSIGN_LOG_LEVEL: 'info',
  COUNTERSIGN_MIGRATION_DATABASE_URL: ownerUrl,
  COUNTERSIGN_SUPERUSER_DATABASE_URL: superuserUrl,
  COUNTERSIGN_OWNER_PASSWORD: 'owner-pw',
};

// Written out on purpose: a change to who gets what must show up here.
const EXPECTED: Record<string, string[]> = {
  api: ['COUNTERSIGN_AUDIT_SIGNING_KEY_FILE'],
  approval: [],
  issuer: ['COUNTERSIGN_CA_DIR'],
  notifier: ['COUNTERSIGN_SMTP_URL'],
  reaper: ['COUNTERSIGN_AUDIT_SIGNING_KEY_FILE'],
};
const COMMON = [
  'COUNTERSIGN_DATABASE_URL',
  'COUNTERSIGN_LOG_LEVEL',
  'COUNTERSIGN_PUBLIC_URL',
  'COUNTERSIGN_REDIS_URL',
  'PATH',
];

describe('serviceEnv', () => {
  for (const name of SERVICE_NAMES) {
    it(`${name}: the application role's URL and its own secrets only`, () => {
      const env = serviceEnv(name, stackEnv, { caOfflineDir });
      expect(Object.keys(env).sort()).toEqual([...COMMON, ...(EXPECTED[name] ?? [])].sort());
      expect(env.COUNTERSIGN_DATABASE_URL).toBe(appUrl);
      const values = Object.values(env).join('\n');
      for (const secret of [ownerUrl, superuserUrl, 'owner-pw', 'su-pw', caOfflineDir]) {
        expect(values).not.toContain(secret);
      }
    });
  }

  it('never passes the owner or superuser variables, whoever asks', () => {
    for (const name of SERVICE_NAMES) {
      const env = serviceEnv(name, stackEnv, { caOfflineDir });
      for (const key of NEVER_FOR_SERVICES) expect(env[key], `${name} ${key}`).toBeUndefined();
      for (const [key, only] of Object.entries(SECRETS_ONLY_FOR)) {
        if (!only.includes(name)) expect(env[key], `${name} ${key}`).toBeUndefined();
      }
    }
  });

  it.each([
    ['the owner URL as the database URL', { COUNTERSIGN_DATABASE_URL: ownerUrl }, /role "countersign_owner"/],
    ['the superuser URL under another name', { SOME_URL: superuserUrl }, /role "postgres"/],
    [
      'a URL without a user (the OS user)',
      { COUNTERSIGN_DATABASE_URL: 'postgresql://127.0.0.1/countersign' },
      /OS user/,
    ],
    ['the offline CA directory as the CA directory', { COUNTERSIGN_CA_DIR: caOfflineDir }, /offline CA directory/],
    [
      'the root key by its path',
      { COUNTERSIGN_CA_KEY_FILE: join(caOfflineDir, 'root.key.pem') },
      /offline CA directory/,
    ],
  ])('refuses to start a service with %s', (_what, extra, message) => {
    expect(() => serviceEnv('issuer', { ...stackEnv, ...extra }, { caOfflineDir })).toThrow(message);
  });

  it('leaves a sibling directory whose name merely starts the same alone', () => {
    const env = serviceEnv('issuer', { ...stackEnv, COUNTERSIGN_CA_DIR: `${caOfflineDir}-not` }, { caOfflineDir });
    expect(env.COUNTERSIGN_CA_DIR).toBe(`${caOfflineDir}-not`);
  });
});
