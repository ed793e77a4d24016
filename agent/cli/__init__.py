"""One module per ``agentbus`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Keep module-level imports light: every module is imported to build ``--help``.
"""
