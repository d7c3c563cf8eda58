"""The controller at scale against kmock: N namespaces (all selected), M unrelated Secrets, one
Bundle; measures the time until every namespace has its target, the time for a source change
to reach every target, and the controller's peak RSS (VmHWM).

    python3 crates/controller/bench/controller_bench.py [--binary target/debug/anchorage]
        [--namespaces 1000] [--secrets 5000]

kmock is a Python emulator: it ignores label selectors (so the controller's labelled watches and
lists receive every Secret — a worst case for memory that a real API server does not impose)
and serves each request in one Python event loop (the latency is mostly kmock's). Figures go
to docs/benchmarks.md with the build and the machine.
"""
import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests', 'support'))
import kmock  # noqa: E402
from kmock_server import Emulator, RESOURCES  # noqa: E402


def make_cert(cn: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
             '-nodes', '-keyout', f'{d}/k', '-out', f'{d}/c', '-days', '30', '-subj', f'/CN={cn}',
             '-addext', 'basicConstraints=critical,CA:TRUE'],
            check=True, capture_output=True)
        return open(f'{d}/c').read()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary', default='target/debug/anchorage')
    ap.add_argument('--namespaces', type=int, default=1000)
    ap.add_argument('--secrets', type=int, default=5000)
    args = ap.parse_args()
    first, second = make_cert('Bench Root One'), make_cert('Bench Root Two')

    async with Emulator() as emulator:
        for key, info in RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(**info)
        async with kmock.Server(emulator) as server:
            base = f'http://127.0.0.1:{server.port}'
            async with aiohttp.ClientSession() as http:
                async def post(path, body):
                    async with http.post(base + path, json=body) as r:
                        assert r.status < 300, (path, r.status, await r.text())

                t = time.monotonic()
                await post('/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'trust'}})
                for i in range(args.namespaces):
                    await post('/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace',
                                                      'metadata': {'name': f'ns-{i:04}', 'labels': {'bench': 'on'}}})
                filler = 'x' * 1024
                for i in range(args.secrets):
                    ns = f'ns-{i % args.namespaces:04}'
                    await post(f'/api/v1/namespaces/{ns}/secrets', {'apiVersion': 'v1', 'kind': 'Secret',
                               'metadata': {'name': f'unrelated-{i}', 'namespace': ns}, 'stringData': {'v': filler}})
                await post('/api/v1/namespaces/trust/configmaps', {'apiVersion': 'v1', 'kind': 'ConfigMap',
                           'metadata': {'name': 'cas', 'namespace': 'trust'}, 'data': {'one.crt': first}})
                await post('/apis/trust.anchorage.dev/v1alpha1/bundles', {
                    'apiVersion': 'trust.anchorage.dev/v1alpha1', 'kind': 'Bundle',
                    'metadata': {'name': 'bench', 'uid': 'bench-uid'},
                    'spec': {'sources': [{'configMap': {'name': 'cas', 'keySuffix': '.crt'}}],
                             'target': {'configMap': {}, 'namespaceSelector': {'matchLabels': {'bench': 'on'}}}}})
                print(f'seeded {args.namespaces} namespaces, {args.secrets} unrelated Secrets in {time.monotonic() - t:.1f} s', flush=True)

                async def targets_with(marker: str) -> int:
                    async with http.get(base + '/api/v1/configmaps') as r:
                        items = (await r.json())['items']
                    return sum(1 for o in items
                               if o.get('metadata', {}).get('name') == 'bench'
                               and marker in (o.get('data') or {}).get('ca-certificates.crt', ''))

                with tempfile.NamedTemporaryFile('w', suffix='.kubeconfig', delete=False) as kc:
                    kc.write(f'apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster: {{server: "{base}"}}\n'
                             'users:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n'
                             'current-context: c\n')
                env = dict(os.environ, KUBECONFIG=kc.name)
                env.pop('KUBERNETES_SERVICE_HOST', None)
                proc = subprocess.Popen([args.binary, '-q', 'controller', '--trust-namespace', 'trust'], env=env)
                try:
                    marker1 = first.splitlines()[1]
                    t = time.monotonic()
                    while await targets_with(marker1) < args.namespaces:
                        await asyncio.sleep(0.5)
                        assert proc.poll() is None, 'the controller exited'
                    initial = time.monotonic() - t
                    print(f'initial sync: {args.namespaces} targets in {initial:.1f} s', flush=True)
                    async with http.patch(base + '/api/v1/namespaces/trust/configmaps/cas',
                                          json={'data': {'two.crt': second}},
                                          headers={'Content-Type': 'application/merge-patch+json'}) as r:
                        assert r.status < 300
                    marker2 = second.splitlines()[1]
                    t = time.monotonic()
                    while await targets_with(marker2) < args.namespaces:
                        await asyncio.sleep(0.25)
                    change = time.monotonic() - t
                    print(f'source change reached {args.namespaces} targets in {change:.1f} s', flush=True)
                    status = open(f'/proc/{proc.pid}/status').read()
                    hwm = next(line for line in status.splitlines() if line.startswith('VmHWM'))
                    rss = next(line for line in status.splitlines() if line.startswith('VmRSS'))
                    print(f'controller {hwm.split(":")[1].strip()} peak, {rss.split(":")[1].strip()} now', flush=True)
                finally:
                    proc.terminate()
                    # Wait without blocking the event loop: kmock runs on it, and the controller
                    # finishes its requests to kmock before it exits.
                    t = time.monotonic()
                    while proc.poll() is None:
                        await asyncio.sleep(0.1)
                    print(f'controller stopped {time.monotonic() - t:.1f} s after SIGTERM, exit {proc.returncode}', flush=True)
                    os.unlink(kc.name)


if __name__ == '__main__':
    asyncio.run(main())
