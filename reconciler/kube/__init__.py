"""Kubernetes as an edge: the cluster's Services, EndpointSlices and Pods as a service registry.

* :mod:`~reconciler.kube.client`: the API (``kubernetes_asyncio`` for the kubeconfig or the
  in-cluster service account and the authenticated transport; lists and watches of JSON, bounded);
* :mod:`~reconciler.kube.objects`: pure: the JSON read into Services, slices and Pod labels, and
  the :class:`~reconciler.translate.ServiceRegistry` they make;
* :mod:`~reconciler.kube.informer`: list, then watch from the list's resourceVersion; re-list on
  410 Gone; back off on errors;
* :mod:`~reconciler.kube.endpoints`: the three informers, debounced into one registry update.

The engine merges the cluster's registry with the ServiceEntries' (Kubernetes first, as Istio)
and serves the result; see :meth:`reconciler.engine.reconcile.Engine.update_cluster`.
"""

__all__: list[str] = []
