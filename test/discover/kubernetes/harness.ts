// An old name for discoverClient.ts, kept for the tests that still import it (realApiServer,
// realApiServerFaults, replicas): import discoverClient.ts directly, and delete this file once none does.
export * from './discoverClient.ts';
