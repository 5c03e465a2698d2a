"""What every ActionItems process shares: settings, logs, problem bodies, read-model layout."""
