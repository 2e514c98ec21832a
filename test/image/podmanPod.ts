// What the harness changes in an injected Pod before `podman kube play` (podman 4.3) runs it, and why. Each
// change is listed in the returned notes so a test can print them; everything else goes to podman as the
// webhook emitted it (container securityContext, resources, env, ports, dnsConfig, emptyDir, volume mounts).
import { writeFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export interface PodmanPod {
  pod: any;
  notes: string[];
  /** name=value pairs for containers.conf default_sysctls during kube play. */
  sysctls: string[];
}

/**
 * POD as podman can run it. TOKEN_DIR_ON_HOST is a folder holding a file `token`, mounted where the projected
 * service-account token would be.
 */
export function podForPodman(pod: any, tokenDirOnHost: string): PodmanPod {
  const out = structuredClone(pod);
  const notes: string[] = [];
  const spec = out.spec;

  // Native sidecars (init containers with restartPolicy Always, Kubernetes 1.29+): podman runs every init
  // container to completion before the app containers, so the sidecar would hold the pod back forever.
  const native = (spec.initContainers ?? []).filter((c: any) => c.restartPolicy === 'Always');
  if (native.length > 0) {
    spec.initContainers = spec.initContainers.filter((c: any) => c.restartPolicy !== 'Always');
    if (spec.initContainers.length === 0) delete spec.initContainers;
    for (const c of native) delete c.restartPolicy;
    spec.containers = [...native, ...spec.containers];
    notes.push(
      `native sidecar ${native.map((c: any) => c.name).join(', ')} moved from initContainers (restartPolicy Always) to the front of containers: podman 4.3 runs init containers to completion first and refuses one with probes`,
    );
  }

  // Projected service-account tokens are minted by the API server: there is none here. The static discover
  // does not check tokens; the sidecar only needs the file to exist.
  for (const v of spec.volumes ?? []) {
    if (v.projected) {
      mkdirSync(tokenDirOnHost, { recursive: true });
      writeFileSync(join(tokenDirOnHost, 'token'), 'not-a-token: no API server mints one under podman\n', { mode: 0o644 });
      delete v.projected;
      v.hostPath = { path: tokenDirOnHost, type: 'Directory' };
      notes.push(
        `projected volume ${v.name} (service-account token) replaced by a host folder with a placeholder token: no API server mints tokens here, and the static discover does not check them`,
      );
    }
  }

  // spec.nodeName (the sidecar's --node, for locality) comes from the scheduler; podman 4.3 resolves no such
  // fieldRef. This machine is the node.
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    for (const e of c.env ?? []) {
      if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') {
        delete e.valueFrom;
        e.value = hostname();
        notes.push(
          `env ${e.name} of ${c.name} (fieldRef spec.nodeName) set to this machine's name ${e.value}: podman 4.3 does not resolve that fieldRef`,
        );
      }
    }
  }

  // Pod-level sysctls: podman 4.3's kube play ignores spec.securityContext.sysctls (read from 4.5 on). They go
  // to podman as containers.conf default_sysctls for this kube play: the pod's infra container, which owns the
  // network namespace, gets them, so every container of the pod sees them.
  const sysctls = (spec.securityContext?.sysctls ?? []).map((s: any) => `${s.name}=${s.value}`);
  if (sysctls.length > 0)
    notes.push(
      `pod sysctls ${sysctls.join(', ')} passed as containers.conf default_sysctls (podman 4.3's kube play ignores spec.securityContext.sysctls)`,
    );
  const probed = [...spec.containers].filter((c: any) => c.startupProbe || c.readinessProbe).map((c: any) => c.name);
  if (probed.length > 0)
    notes.push(
      `startup and readiness probes of ${probed.join(', ')} kept but not run (podman 4.3 makes no healthcheck of an httpGet probe): the test polls the sidecar's /ready itself, as the kubelet would, and podman starts the containers in order without waiting for it`,
    );
  return { pod: out, notes, sysctls };
}
