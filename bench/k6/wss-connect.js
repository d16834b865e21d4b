// WebSocket connection setup rate with k6: each iteration opens a wss://
// connection, exchanges one message and closes.
//   k6 run -e TARGET=wss://127.0.0.1:24001/echo bench/k6/wss-connect.js
import ws from 'k6/ws';
import { check } from 'k6';

export const options = {
  vus: Number(__ENV.VUS || 32),
  duration: __ENV.DURATION || '10s',
  insecureSkipTLSVerify: true,
};

export default function () {
  const res = ws.connect(__ENV.TARGET || 'wss://127.0.0.1:24001/echo', {}, function (socket) {
    socket.on('open', function () { socket.send('ping'); });
    socket.on('message', function () { socket.close(); });
  });
  check(res, { 'upgraded': (r) => r && r.status === 101 });
}
