"""One module per ``edgeprune`` sub-command (see ``edgeprune.cli.COMMANDS``)."""
