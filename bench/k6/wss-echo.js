// S5 with k6: long-lived wss:// connections; a fraction of them echo a
// message every second and record the round trip, the rest stay idle.
//   k6 run -e TARGET=wss://127.0.0.1:24001/echo -e VUS=2000 bench/k6/wss-echo.js
import ws from 'k6/ws';
import { check } from 'k6';
import { Trend, Counter } from 'k6/metrics';

const rtt = new Trend('echo_rtt', true);
const failed = new Counter('failed_connections');

const vus = Number(__ENV.VUS || 1000);
const hold = __ENV.HOLD || '30s';
const active = Number(__ENV.ACTIVE || 0.1);

export const options = {
  scenarios: {
    hold: { executor: 'per-vu-iterations', vus: vus, iterations: 1, maxDuration: '5m' },
  },
  insecureSkipTLSVerify: true,
};

function seconds(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) return 30;
  return m[2] === 'ms' ? Number(m[1]) / 1000 : m[2] === 'm' ? Number(m[1]) * 60 : Number(m[1]);
}

export default function () {
  const echoing = (__VU % Math.round(1 / active)) === 0;
  const res = ws.connect(__ENV.TARGET || 'wss://127.0.0.1:24001/echo', {}, function (socket) {
    let sent = 0;
    socket.on('open', function () {
      if (echoing) {
        socket.setInterval(function () {
          sent = Date.now();
          socket.send(String(sent));
        }, 1000);
      }
      socket.setTimeout(function () { socket.close(); }, seconds(hold) * 1000);
    });
    socket.on('message', function (msg) {
      rtt.add(Date.now() - Number(msg));
    });
    socket.on('error', function () { failed.add(1); });
  });
  if (!check(res, { 'upgraded': (r) => r && r.status === 101 })) {
    failed.add(1);
  }
}
