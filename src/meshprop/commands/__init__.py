"""Subcommands of the ``meshprop`` command, one module each (see ``meshprop.cli``)."""
