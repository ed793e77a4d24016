"""logcollector: follow log files and globs, one stateless event per line.

Run alone against a running forwarder: ``agentbus logcollector --config F``. Its configuration
section is declared in ``settings.py``; the package itself imports nothing, so reading the
configuration does not load the collector.
"""
