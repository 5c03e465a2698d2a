"""The command API: validates writes, makes them durable on the log, answers 202."""
