"""In-memory fakes of what the agent talks to, for tests that need no socket."""
