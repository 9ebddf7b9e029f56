export * from './database.ts';
export * from './fixtures.ts';
export type { ProvidedInfra } from './global-setup.ts';
export * from './intake-fixtures.ts';
