"""The top layer: the ``agentbus`` CLI, the supervisor, status, health and the demo."""
