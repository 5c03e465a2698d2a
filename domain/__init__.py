"""The rules of ActionItems: commands, their limits, what they do to an item. Pure: no I/O."""
