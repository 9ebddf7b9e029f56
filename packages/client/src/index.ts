export * from './client.ts';
export * from './errors.ts';
export * from './format.ts';
export * from './routes.ts';
export type * from './types.ts';
