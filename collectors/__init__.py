"""agentbus collectors."""
