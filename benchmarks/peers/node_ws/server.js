// A room server on Node's `ws` package, the usual choice for a Node team.
'use strict';
const { WebSocketServer } = require('ws');

const rooms = new Map();
const TEXT = { binary: false };
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0),
                                  perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('listening', () => console.log(`listening ${wss.address().port}`));
wss.on('connection', (ws) => {
  const joined = [];
  ws.on('message', (raw) => {
    const msg = JSON.parse(raw);
    if (msg.type === 'join') {
      if (!rooms.has(msg.room)) rooms.set(msg.room, new Set());
      rooms.get(msg.room).add(ws);
      joined.push(msg.room);
      ws.send(JSON.stringify({ type: 'joined', room: msg.room }));
    } else if (msg.type === 'send') {
      // Serialized once: every member is sent the same Buffer (as a text frame), so the
      // string is not encoded to UTF-8 again per member.
      const out = Buffer.from(JSON.stringify({ type: 'message', room: msg.room, body: msg.body }));
      for (const member of rooms.get(msg.room) || []) member.send(out, TEXT);
    }
  });
  ws.on('close', () => { for (const room of joined) rooms.get(room).delete(ws); });
});
