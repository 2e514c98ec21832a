// The policy named in the snapshot, as a balancer.
import type { LbPolicy } from '../../shared/snapshot.ts';
import type { Balancer } from './balancer.ts';
import { P2cBalancer } from './p2c.ts';
import { RandomBalancer } from './random.ts';
import { RingHashBalancer } from './ringHash.ts';
import { RoundRobinBalancer } from './roundRobin.ts';

export function createBalancer(policy: LbPolicy): Balancer {
  switch (policy) {
    case 'round_robin':
      return new RoundRobinBalancer();
    case 'random':
      return new RandomBalancer();
    case 'hash':
      return new RingHashBalancer();
    default:
      return new P2cBalancer();
  }
}
