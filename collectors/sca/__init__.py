"""sca: security configuration assessment — policies of checks evaluated on this host.

Policies are YAML files in the Wazuh SCA format (``policy``, ``requirements``,
``variables``, ``checks``); each check's result (``passed``, ``failed``, ``not
applicable`` with the reason) is one stateful document of the ``sca`` index, sent only when
it changed. One concept per module: ``trust`` (which files may be loaded), ``policy``
(loading and validation), ``rules`` (the rule language), ``regex`` (its two regex
dialects), ``commands`` (running ``c:`` rules), ``evaluate`` (results), ``documents``
(the index's documents), ``service`` (the collector). Run alone against a running
forwarder: ``agentbus sca --config F [--once]``; try a policy: ``agentbus sca run``.
The package itself imports nothing, so reading the configuration does not load it.
"""
