export type { Job, Queue, Worker } from 'bullmq';
export { UnrecoverableError } from 'bullmq';
export * from './connection.ts';
export * from './contracts.ts';
export * from './queues.ts';
