export { bootstrap, dbMigrate, dbProvision } from './admin-commands.ts';
