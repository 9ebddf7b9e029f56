import { closeSharedClients, startService } from '@countersign/runtime';

/** Composition root of the reaper (placeholder until its schedules land): starts, reports health, stops. */
const rt = await startService('reaper');
await rt.startOps();
rt.log.info('reaper started');
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
