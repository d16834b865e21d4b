// S1 with k6: keep-alive HTTPS requests through a terminator.
//   k6 run -e TARGET=https://127.0.0.1:24000/ bench/k6/https-keepalive.js
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  vus: Number(__ENV.VUS || 64),
  duration: __ENV.DURATION || '10s',
  insecureSkipTLSVerify: true,
  tlsVersion: { min: 'tls1.3', max: 'tls1.3' },
  thresholds: { checks: ['rate>0.99'] },
};

export default function () {
  const res = http.get(__ENV.TARGET || 'https://127.0.0.1:24000/');
  check(res, { 'status 200': (r) => r.status === 200 });
}
