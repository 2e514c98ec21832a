// End to end, variant 2 (discover from the fake Kubernetes API server, the pods' addresses as
// EndpointSlice endpoints, mesh configs as ConfigMaps, sidecars presenting service-account
// tokens): scenarios 1 (names, balancing, upstream) and 2 (rolling update under 200 rps, the
// old pod's endpoint marked terminating in its EndpointSlice before it goes).
import { scenarioNamesAndBalancing, scenarioRollingUpdate } from './lib/scenarios.ts';
import { e2eSuite } from './lib/suite.ts';

e2eSuite('e2e, Kubernetes API: names and rolling update', {
  // A generous connect timeout: on a shared 2-core machine a starved event loop can miss 250 ms.
  tag: 'k8', variant: 'kubernetes', webApiOptions: { ConnectionTimeoutMS: 2000 },
}, async (t, mesh) => {
  await scenarioNamesAndBalancing(t, mesh, false);
  await scenarioRollingUpdate(t, mesh);
});
