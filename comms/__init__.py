"""agentbus comms."""
