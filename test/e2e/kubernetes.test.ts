// End to end, variant 2 (discover --kubernetes against this file's real control plane: the api pods
// as Pods bound to a Node with their status written as a kubelet would, the EndpointSlices the
// controller makes of them, mesh configs as ConfigMaps, sidecars presenting TokenRequest tokens that
// discover reviews with the API server): scenarios 1 (names, balancing, upstream) and 2 (rolling
// update under 200 rps, the old pod deleted gracefully so the controller marks its endpoint
// terminating before it goes).
import t from 'tap';
import { kubeForFile } from '../lib/kube.ts';
import { scenarioNamesAndBalancing, scenarioRollingUpdate } from './lib/scenarios.ts';
import { e2eSuite } from './lib/suite.ts';

const kube = kubeForFile(t, import.meta.filename);

if (kube) {
  e2eSuite(
    'e2e, Kubernetes API: names and rolling update',
    {
      // A generous connect timeout: on a shared 2-core machine a starved event loop can miss 250 ms.
      tag: 'k8',
      variant: 'kubernetes',
      webApiOptions: { ConnectionTimeoutMS: 2000 },
      kube,
    },
    async (t, mesh) => {
      await scenarioNamesAndBalancing(t, mesh, false);
      await scenarioRollingUpdate(t, mesh);
    },
  );
}
