// A bench child: the same local names answered the codec way, to compare with the hand path.
// "dns-packet": dgram + a full decode and encode per query. "dns2": the dns2 server (its module
// path given, as it is not a dependency of shoal). Prints "port N".
//   node bench/lib/dnsCodecChild.ts dns-packet NAMES_JSON
//   node bench/lib/dnsCodecChild.ts dns2 NAMES_JSON /path/to/node_modules/dns2
import { createSocket } from 'node:dgram';
import { pathToFileURL } from 'node:url';
import dnsPacket from 'dns-packet';

const [codec, namesJson, dns2Path] = process.argv.slice(2);
const table = new Map<string, string>((JSON.parse(namesJson) as { name: string; address: string }[]).map((n) => [n.name, n.address]));

if (codec === 'dns-packet') {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const address = table.get(question.name.toLowerCase());
    const answers: dnsPacket.Answer[] = address && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 5, data: address }] : [];
    socket.send(
      dnsPacket.encode({
        type: 'response',
        id: q.id,
        flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (q.flags! & dnsPacket.RECURSION_DESIRED),
        questions: q.questions,
        answers,
      }),
      rinfo.port,
      rinfo.address,
    );
  });
  socket.bind(0, '127.0.0.1', () => process.stdout.write(`port ${socket.address().port}\n`));
} else if (codec === 'dns2') {
  const dns2 = (await import(pathToFileURL(`${dns2Path}/index.js`).href)).default;
  const { Packet } = dns2;
  const server = dns2.createServer({
    udp: true,
    handle: (request: { questions: { name: string; type: number }[] }, send: (r: unknown) => void) => {
      const response = Packet.createResponseFromRequest(request);
      const [question] = request.questions;
      const address = question && table.get(question.name.toLowerCase());
      if (address && question.type === Packet.TYPE.A) {
        response.answers.push({ name: question.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 5, address });
      }
      send(response);
    },
  });
  server.on('listening', () => process.stdout.write(`port ${server.addresses().udp.port}\n`));
  server.listen({ udp: { port: 0, address: '127.0.0.1' } });
} else {
  throw new Error(`unknown codec ${codec}`);
}
