"""agentbus forwarder."""
