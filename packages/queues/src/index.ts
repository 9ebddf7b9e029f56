export { UnrecoverableError } from 'bullmq';
export type { Job, Queue, Worker } from 'bullmq';
export * from './connection.ts';
export * from './contracts.ts';
export * from './queues.ts';
