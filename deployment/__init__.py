"""Real deployment on Flower's Deployment Engine: TLS material, SuperNode keys, command plans.

* :mod:`deployment.certs`: a private CA and the national SuperLink's TLS certificate
  (``cryptography`` only);
* :mod:`deployment.node_keys`: one EC key pair per force for SuperNode authentication;
* :mod:`deployment.plan`: the exact ``flower-superlink``, ``flower-supernode``,
  ``flwr supernode register`` and ``flwr run`` command lines for a set of forces and hosts;
* :mod:`deployment.cli`: ``anprfed deploy certs | node-keys | plan``.

Nothing here moves data: the transport is Flower's own (HTTPS Fleet API, signed SuperNode
requests). See ``docs/deployment.md``.
"""
