export * from './administration.ts';
export * from './api-keys.ts';
export * from './decisions.ts';
export * from './requests.ts';
export * from './views.ts';
