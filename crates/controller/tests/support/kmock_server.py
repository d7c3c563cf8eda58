"""A Kubernetes API emulator for the controller's loop tests: PyPI's kmock (not written here).

Declares the resources the controller uses, listens on 127.0.0.1 on a free port, prints
`PORT <n>` on one line, and serves until stdin closes (the test process ends). With
KMOCK_CLUSTER_TRUST_BUNDLES=1 it also serves `certificates.k8s.io/v1beta1` ClusterTrustBundles
(a cluster with that API enabled); without, that API is not served (404), as on most clusters.
With KMOCK_TRUST_MANAGER=1 it also serves trust-manager's `trust.cert-manager.io/v1alpha1`
Bundles (a cluster with trust-manager's CRD installed).
Install: `python3 -m pip install kmock==0.8` (scripts/install-test-deps.sh does).
"""
import asyncio
import os
import sys

import kmock
from kmock._internal import parsing

# kmock 0.8 reads `/api/v1/namespaces` and `/api/v1/namespaces/<name>` as a namespaced path with
# no resource (a ValueError, HTTP 500): Namespace objects themselves are unreachable. Parse those
# two shapes as the cluster-scoped `namespaces` resource; every other path goes to kmock as is.
_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    parts = path.strip('/').split('/')
    if parts[:3] == ['api', 'v1', 'namespaces'] and len(parts) <= 4:
        name = parts[3] if len(parts) == 4 else None
        return parsing.ParsedPath('', 'v1', 'namespaces', None, name, None)
    return _parse_path(path)


parsing.parse_path = _parse_path_with_namespaces


class Emulator(kmock.KubernetesEmulator):
    """kmock 0.8 stores objects without `metadata.resourceVersion`, and kube-rs's watcher refuses
    watch events without one. Stamp a counter on every create and update (as an API server
    does).

    kmock also keeps every request it has served, for a test's assertions on them (these tests
    make none), and matches each new request by walking that whole history: each request costs
    time in proportion to the requests before it (here 35 ms per create after 300 requests, 265 ms
    after 1,500), which made a 1,000-namespace benchmark impossible. Keep in the history only the
    requests being served (a request must be in it while kmock matches it; watches stay in it
    while they stream). Everything else is kmock's."""

    _version = 0

    def __attrs_post_init__(self):
        super().__attrs_post_init__()
        self._in_flight = set()

    async def _handle(self, request):
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE) and isinstance(request.data, dict):
            Emulator._version += 1
            request.data.setdefault('metadata', {})['resourceVersion'] = str(Emulator._version)
        self._in_flight.add(id(request))
        self._requests[:] = [r for r in self._requests if id(r) in self._in_flight]
        try:
            return await super()._handle(request)
        finally:
            self._in_flight.discard(id(request))

RESOURCES = {
    'v1/namespaces': dict(namespaced=False, kind='Namespace'),
    'v1/configmaps': dict(namespaced=True, kind='ConfigMap'),
    'v1/secrets': dict(namespaced=True, kind='Secret'),
    'events.k8s.io/v1/events': dict(namespaced=True, kind='Event'),
    'coordination.k8s.io/v1/leases': dict(namespaced=True, kind='Lease'),
    'trust.anchorage.dev/v1alpha1/bundles': dict(namespaced=False, kind='Bundle', subresources={'status'}),
}
if os.environ.get('KMOCK_CLUSTER_TRUST_BUNDLES') == '1':
    RESOURCES['certificates.k8s.io/v1beta1/clustertrustbundles'] = dict(
        namespaced=False, kind='ClusterTrustBundle')
if os.environ.get('KMOCK_TRUST_MANAGER') == '1':
    RESOURCES['trust.cert-manager.io/v1alpha1/bundles'] = dict(
        namespaced=False, kind='Bundle', subresources={'status'})


async def main() -> None:
    async with Emulator() as emulator:
        for key, info in RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(**info)
        async with kmock.Server(emulator) as server:
            print(f'PORT {server.port}', flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.read)


if __name__ == '__main__':
    asyncio.run(main())
