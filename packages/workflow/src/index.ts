export * from './administration.ts';
export * from './api-keys.ts';
export * from './client-certificates.ts';
export * from './configuration.ts';
export * from './decisions.ts';
export * from './intake-keys.ts';
export * from './requests.ts';
export * from './views.ts';
