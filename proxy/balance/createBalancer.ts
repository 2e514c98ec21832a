// The policy named in the snapshot, as a balancer.
import type { LbPolicy } from '../../shared/snapshot.ts';
import type { Balancer, Pickable } from './balancer.ts';
import { P2cBalancer } from './p2c.ts';
import { RandomBalancer } from './random.ts';
import { RingHashBalancer } from './ringHash.ts';
import { RoundRobinBalancer } from './roundRobin.ts';

export function createBalancer<T extends Pickable>(policy: LbPolicy): Balancer<T> {
  switch (policy) {
    case 'round_robin':
      return new RoundRobinBalancer<T>();
    case 'random':
      return new RandomBalancer<T>();
    case 'hash':
      return new RingHashBalancer<T>();
    default:
      return new P2cBalancer<T>();
  }
}
