#!/usr/bin/env python3
"""A complete collector: report this host's load average every 10 seconds (stateless)."""

import os
import time

from bus import Ingest, make_event

with Ingest() as ingest:  # the acknowledged path: we learn when the forwarder has it on disk
    while True:
        one, five, fifteen = os.getloadavg()
        event = make_event("example", "loadavg", {"load": {"1m": one, "5m": five, "15m": fifteen}})
        result = ingest.send(event)
        print("committed" if result.ok else f"not accepted: {result.error}")
        time.sleep(10)
