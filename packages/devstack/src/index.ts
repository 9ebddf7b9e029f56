export {
  ensureLocalBinaries,
  type LocalBinaries,
  type PostgresBinaries,
  type RedisBinaries,
} from './binaries.ts';
export { freePort, isPortOpen } from './free-port.ts';
export type { DevstackLog } from './log.ts';
export {
  type PostgresRestartOptions,
  type PostgresServer,
  type StartPostgresOptions,
  startPostgres,
} from './postgres.ts';
export { pingRedis, type RedisRestartOptions, type RedisServer, type StartRedisOptions, startRedis } from './redis.ts';
export {
  type SinkIndexEntry,
  type SinkMessage,
  type SmtpSink,
  type SmtpSinkOptions,
  startSmtpSink,
} from './smtp-sink.ts';
