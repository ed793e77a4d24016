"""agentbus refserver."""
