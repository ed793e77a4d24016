"""fim: file integrity monitoring by periodic scan (sha256 + attributes), stateful differences.

Run alone against a running forwarder: ``agentbus fim --config F [--once]``. Its configuration
section is declared in ``settings.py``; the package itself imports nothing, so reading the
configuration does not load the collector.
"""
