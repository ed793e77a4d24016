"""inventory: what the host is and runs, reported as stateful differences.

Run alone against a running forwarder: ``agentbus inventory --config F [--once]``. Its configuration
section is declared in ``settings.py``; the package itself imports nothing, so reading the
configuration does not load the collector.
"""
