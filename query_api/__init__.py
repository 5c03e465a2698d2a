"""The query API: reads of the ActionItem read model and of command statuses."""
