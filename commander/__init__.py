"""agentbus commander."""
