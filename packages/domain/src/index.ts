export * from './actors.ts';
export * from './configuration.ts';
export * from './durations.ts';
export * from './errors.ts';
export * from './limits.ts';
export * from './policy.ts';
export * from './states.ts';
