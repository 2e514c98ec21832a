// A bench child: the least a Node UDP server can do per DNS query — set QR and send the query
// back — on 127.0.0.1 and a free port; prints "port N". The floor under any Node responder.
import { createSocket } from 'node:dgram';

const socket = createSocket({ type: 'udp4', lookup: (address, _family, cb) => cb(null, address, 4) });
socket.on('message', (msg, rinfo) => {
  msg[2] |= 0x80;
  socket.send(msg, rinfo.port, rinfo.address);
});
socket.bind(0, '127.0.0.1', () => process.stdout.write(`port ${socket.address().port}\n`));
