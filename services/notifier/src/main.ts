import { closeSharedClients, startService } from '@countersign/runtime';

/** Composition root of the notifier (placeholder until email delivery lands): starts, reports health, stops. */
const rt = await startService('notifier');
await rt.startOps();
rt.log.info('notifier started');
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
