import t from 'tap';
import { allocateListenPorts, allocateLoopbacks, isLoopbackAddress, preferredListenPort } from '../../shared/loopbackAndListenPorts.ts';

t.test('loopback addresses come from identity, not order or company', async (t) => {
  const a = allocateLoopbacks(['default/api', 'default/cache', 'other/db']);
  const b = allocateLoopbacks(['other/db', 'default/cache', 'default/api']);
  const c = allocateLoopbacks(['default/api']);
  t.equal(a.get('default/api'), b.get('default/api'));
  t.equal(a.get('default/api'), c.get('default/api'), 'unchanged when other dependencies go');
  const all = [...a.values()];
  t.equal(new Set(all).size, 3, 'distinct');
  for (const addr of all) {
    t.ok(isLoopbackAddress(addr), `${addr} is loopback`);
    t.not(addr, '127.0.0.1');
  }
});

t.test('pinned addresses are kept and never handed out twice', async (t) => {
  const free = allocateLoopbacks(['default/api']).get('default/api')!;
  const m = allocateLoopbacks(['default/api', 'default/web'], new Map([['default/web', free]]));
  t.equal(m.get('default/web'), free);
  t.not(m.get('default/api'), free, 'the hashed identity moves off the pinned address');
});

t.test('many identities never collide and never use reserved addresses', async (t) => {
  const ids = Array.from({ length: 5000 }, (_, i) => `ns${i % 7}/svc-${i}`);
  const m = allocateLoopbacks(ids);
  const addrs = [...m.values()];
  t.equal(new Set(addrs).size, ids.length);
  t.notOk(addrs.some((a) => a === '127.0.0.1' || a.endsWith('.0') || a.endsWith('.255')));
});

t.test('listen ports: preferred slot, explicit wins, collisions probe in port order', async (t) => {
  t.equal(preferredListenPort(8080), 65380);
  t.equal(preferredListenPort(3000), 65400);
  t.equal(preferredListenPort(5301), 65301);
  const m = allocateListenPorts([8080, 80, 9090]);
  t.same(Object.fromEntries(m), { 80: 65380, 8080: 65381, 9090: 65390 });
  const e = allocateListenPorts([8080, 80], new Map([[8080, 65380]]));
  t.same(Object.fromEntries(e), { 8080: 65380, 80: 65381 });
  t.throws(() => allocateListenPorts([1], new Map([[1, 70000]])), /outside 65301-65400/);
  t.throws(() => allocateListenPorts(Array.from({ length: 101 }, (_, i) => i + 1)), /do not fit/);
  const wrap = allocateListenPorts([100, 200]);
  t.same(Object.fromEntries(wrap), { 100: 65400, 200: 65301 }, 'wraps around at the top');
});
