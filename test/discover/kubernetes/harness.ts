// What the Kubernetes tests used to import from one place. discover's client and CLI helpers live in
// discoverClient.ts (no fake in it); the fake-API helpers in fakeCluster.ts are re-exported here only
// for the tests still on the fake (access.test.ts, cli.test.ts, inCluster.test.ts): import
// discoverClient.ts directly, and delete this file with the fake.
export * from './discoverClient.ts';
export * from './fakeCluster.ts';
