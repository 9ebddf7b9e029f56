export * from './demo-seed.ts';
export * from './service-process.ts';
export * from './stack.ts';
