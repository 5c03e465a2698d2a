"""The projector: consumes the command log and builds the ActionItem read model."""
