"""Sub-commands of ``segr1``: each module has ``add_arguments(parser)`` and ``run(args) -> int``."""
