// A room server on Node's `ws` package, the usual choice for a Node team.
'use strict';
const { WebSocketServer } = require('ws');

const rooms = new Map();
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
    } else if (msg.type === 'send') {
      const out = JSON.stringify({ type: 'message', room: msg.room, body: msg.body });
      for (const member of rooms.get(msg.room) || []) member.send(out);
    }
  });
  ws.on('close', () => { for (const room of joined) rooms.get(room).delete(ws); });
});
