"""Active response: the host acts when the server tells it to, within what its owner allows.

A separate executor process (``agentbus active-response``, its own systemd unit and
privileges) serves the bus topic ``active-response``: the action
``active-response.<name>`` runs the program ``<name>`` of the allowed directory with the
classic agent's JSON message on its standard input (docs/active-response.md).

- :mod:`active_response.settings`: the ``[active_response]`` section and how it is read;
- :mod:`active_response.programs`: the allowed directory, names and trust checks;
- :mod:`active_response.message`: the JSON message a program reads;
- :mod:`active_response.run`: running one program (timeout, output cap, clean environment);
- :mod:`active_response.store`: the timed responses in force (SQLite);
- :mod:`active_response.status`: the status file ``agentbus ar list`` reads;
- :mod:`active_response.executor`: the executor on the bus;
- ``programs/``: our own programs (firewall-drop, host-deny, disable-account).
"""
