"""Real deployment on Flower's Deployment Engine: TLS material, SuperNode keys, command plans.

* :mod:`federation.deploy.certs`: a private CA and the national SuperLink's TLS certificate
  (``cryptography`` only);
* :mod:`federation.deploy.node_keys`: one EC key pair per force for SuperNode authentication;
* :mod:`federation.deploy.plan`: the exact ``flower-superlink``, ``flower-supernode``,
  ``flwr supernode register`` and ``flwr run`` command lines for a set of forces and hosts;
* :mod:`federation.deploy.cli`: ``anprfed deploy certs | node-keys | plan``.

Nothing here moves data: the transport is Flower's own (HTTPS Fleet API, signed SuperNode
requests). See ``docs/deployment.md``.
"""
